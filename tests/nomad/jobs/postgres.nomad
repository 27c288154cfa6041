# A stateful job in the style of Nomad's host volume guide: a host volume, constraints on the
# kernel and the node class, a restart policy and an update block of its own. meshkit joins
# through the native pattern: a meshkit-proxy task in the group speaks mTLS for "db".
job "postgres" {
  datacenters = ["dc1"]
  type        = "service"

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  update {
    max_parallel     = 1
    min_healthy_time = "30s"
    healthy_deadline = "10m"
  }

  group "db" {
    count = 1

    constraint {
      attribute = "${node.class}"
      operator  = "="
      value     = "storage"
    }

    volume "pgdata" {
      type      = "host"
      source    = "pgdata"
      read_only = false
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "25s"
      mode     = "delay"
    }

    service {
      name = "db"
      tags = ["primary"]

      meta {
        meshkit = "native"
      }
    }

    task "postgres" {
      driver = "raw_exec"

      volume_mount {
        volume      = "pgdata"
        destination = "/var/lib/postgresql/data"
        read_only   = false
      }

      config {
        command = "/usr/lib/postgresql/15/bin/postgres"
        args    = ["-D", "/var/lib/postgresql/data", "-h", "127.0.0.1", "-p", "5432"]
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
