# A web job with its own consul-template blocks (Nomad's template stanza examples: a secret
# from Vault, a value from Consul KV, an env file), an artifact and a Vault stanza. Its service
# joins the mesh through the native pattern; meshkit adds the meshkit-proxy task and its file.
job "web" {
  datacenters = ["dc1"]

  group "web" {
    count = 2

    service {
      name = "web"
      tags = ["frontend", "v2"]

      meta {
        meshkit = "native"
        team    = "shop"
      }
    }

    task "web" {
      driver = "raw_exec"

      vault {
        policies = ["web"]
      }

      artifact {
        source      = "https://releases.example.internal/web/web-2.4.1.tar.gz"
        destination = "local/web"
      }

      template {
        data        = <<EOH
{{ with secret "kv/data/web" }}API_KEY={{ .Data.data.key }}{{ end }}
DB_ADDR=127.0.0.1:9191
FEATURE_FLAGS={{ key "web/flags" }}
EOH
        destination = "secrets/web.env"
        env         = true
      }

      template {
        data          = "listen: 127.0.0.1:8080 # alloc [[ env \"NOMAD_ALLOC_ID\" ]]\n"
        destination   = "local/web.yaml"
        left_delimiter  = "[["
        right_delimiter = "]]"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      config {
        command = "local/web/bin/web"
        args    = ["-config", "local/web.yaml"]
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
