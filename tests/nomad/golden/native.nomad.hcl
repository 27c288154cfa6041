# Rendered by meshkit.connect from the mesh model; edit the model, not this.
job "shop" {
  datacenters = ["dc1"]
  type = "service"
  priority = 50

  group "web" {
    count = 2

    network {
      mode = "host"
      port "mesh" {}
    }

    update {
      max_parallel = 1
      health_check = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "5m"
      progress_deadline = "10m"
      auto_revert = false
      canary = 0
    }

    restart {
      attempts = 3
      interval = "30m"
      delay = "15s"
      mode = "fail"
    }

    service {
      name = "web"
      port = "mesh"
      task = "meshkit-proxy"
      tags = ["frontend"]
      meta {
        team = "shop"
      }
      connect {
        native = true
      }
      check {
        name = "web mesh listener"
        type = "tcp"
        port = "mesh"
        interval = "10s"
        timeout = "2s"
      }
    }

    task "web" {
      driver = "exec"
      config {
        args = ["--port", "8080"]
        command = "/srv/web/bin/web"
      }
      env {
        DB_ADDR = "127.0.0.1:9191"
      }
      resources {
        cpu = 200
        memory = 256
      }
      template {
        data = <<EOH
{{ with secret "kv/web" }}API_KEY={{ .Data.key }}{{ end }}
DB={{ env "NOMAD_UPSTREAM_ADDR_db" }} ALLOC=$${NOMAD_ALLOC_ID} 100%%{ok}
EOH
        destination = "secrets/web.env"
        change_mode = "restart"
        env = true
      }
    }

    task "meshkit-proxy" {
      driver = "raw_exec"
      config {
        args = ["-service", "web", "-listen", "$${NOMAD_IP_mesh}:$${NOMAD_PORT_mesh}", "-service-addr", "127.0.0.1:8080", "-upstream", "db:127.0.0.1:9191", "-upstream", "db-nearest.query:127.0.0.1:9192"]
        command = "/usr/local/bin/meshkit-proxy"
      }
      env {
        CONSUL_HTTP_ADDR = "127.0.0.1:8500"
      }
      resources {
        cpu = 100
        memory = 64
      }
    }
  }

  group "db" {
    count = 1

    network {
      mode = "host"
      port "mesh" {}
    }

    update {
      max_parallel = 1
      health_check = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "5m"
      progress_deadline = "10m"
      auto_revert = false
      canary = 0
    }

    restart {
      attempts = 3
      interval = "30m"
      delay = "15s"
      mode = "fail"
    }

    service {
      name = "db"
      port = "mesh"
      task = "meshkit-proxy"
      connect {
        native = true
      }
      check {
        name = "db mesh listener"
        type = "tcp"
        port = "mesh"
        interval = "10s"
        timeout = "2s"
      }
    }

    task "db" {
      driver = "raw_exec"
      config {
        command = "/usr/lib/postgresql/bin/postgres"
      }
      resources {
        cpu = 100
        memory = 128
      }
    }

    task "meshkit-proxy" {
      driver = "raw_exec"
      config {
        args = ["-service", "db", "-listen", "$${NOMAD_IP_mesh}:$${NOMAD_PORT_mesh}", "-service-addr", "127.0.0.1:5432"]
        command = "/usr/local/bin/meshkit-proxy"
      }
      env {
        CONSUL_HTTP_ADDR = "127.0.0.1:8500"
      }
      resources {
        cpu = 100
        memory = 64
      }
    }
  }
}
