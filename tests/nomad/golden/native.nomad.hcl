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
        args = ["-config", "$${NOMAD_TASK_DIR}/meshkit-proxy.yaml"]
        command = "/usr/local/bin/meshkit-proxy"
      }
      env {
        CONSUL_HTTP_ADDR = "127.0.0.1:8500"
      }
      resources {
        cpu = 100
        memory = 64
      }
      template {
        data = <<EOH
# Written by Nomad from the meshkit mesh model; meshkit-proxy -config reads it.
mode: consul
service: "web"
public_listener:
  bind_address: "{{ env "NOMAD_IP_mesh" }}"
  bind_port: {{ env "NOMAD_PORT_mesh" }}
  local_service_address: "127.0.0.1:8080"
upstreams:
  - destination_name: "db"
    destination_type: "service"
    local_bind_address: "127.0.0.1"
    local_bind_port: 9191
  - destination_name: "db-nearest"
    destination_type: "prepared_query"
    local_bind_address: "127.0.0.1"
    local_bind_port: 9192
EOH
        destination = "local/meshkit-proxy.yaml"
        change_mode = "restart"
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
        args = ["-config", "$${NOMAD_TASK_DIR}/meshkit-proxy.yaml"]
        command = "/usr/local/bin/meshkit-proxy"
      }
      env {
        CONSUL_HTTP_ADDR = "127.0.0.1:8500"
      }
      resources {
        cpu = 100
        memory = 64
      }
      template {
        data = <<EOH
# Written by Nomad from the meshkit mesh model; meshkit-proxy -config reads it.
mode: consul
service: "db"
public_listener:
  bind_address: "{{ env "NOMAD_IP_mesh" }}"
  bind_port: {{ env "NOMAD_PORT_mesh" }}
  local_service_address: "127.0.0.1:5432"
upstreams: []
EOH
        destination = "local/meshkit-proxy.yaml"
        change_mode = "restart"
      }
    }
  }
}
