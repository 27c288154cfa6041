# Rendered by meshkit.connect from the mesh model; edit the model, not this.
job "shop" {
  datacenters = ["dc1"]
  type = "service"
  priority = 50

  group "web" {
    count = 2

    network {
      mode = "bridge"
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
      port = "8080"
      tags = ["frontend"]
      meta {
        team = "shop"
      }
      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "db"
              local_bind_port = 9191
            }
            upstreams {
              destination_name = "db-nearest"
              destination_type = "prepared_query"
              local_bind_port = 9192
            }
          }
        }
        sidecar_task {
          driver = "raw_exec"
          config {
            args = ["-proxy-id", "_nomad-task-$${NOMAD_ALLOC_ID}-group-$${NOMAD_GROUP_NAME}-web-8080-sidecar-proxy"]
            command = "/usr/local/bin/meshkit-proxy"
          }
          env {
            CONSUL_HTTP_ADDR = "$${attr.unique.network.ip-address}:8500"
          }
          resources {
            cpu = 100
            memory = 64
          }
        }
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
  }

  group "db" {
    count = 1

    network {
      mode = "bridge"
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
      port = "5432"
      connect {
        sidecar_service {
          proxy {}
        }
        sidecar_task {
          driver = "raw_exec"
          config {
            args = ["-proxy-id", "_nomad-task-$${NOMAD_ALLOC_ID}-group-$${NOMAD_GROUP_NAME}-db-5432-sidecar-proxy"]
            command = "/usr/local/bin/meshkit-proxy"
          }
          env {
            CONSUL_HTTP_ADDR = "$${attr.unique.network.ip-address}:8500"
          }
          resources {
            cpu = 100
            memory = 64
          }
        }
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
  }
}
