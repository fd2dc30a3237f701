# Flowable nodes on Nomad, registered in Consul the way flowgate discovers
# them: service "flowable" (flowgate's consul.services), an HTTP check on
# /actuator/health (flowgate sends requests only to passing instances), meta
# secure = "false" (the node speaks plain HTTP; "true" makes flowgate use
# HTTPS to it).
#
#   nomad job run -var 'image=registry.example.com/flowable-work:3.16' deploy/nomad/flowable.nomad.hcl

variable "image" {
  description = "The Flowable image (Flowable Work, Engage or your own Spring Boot application) serving HTTP on the port in SERVER_PORT."
  type        = string
}

variable "count" {
  description = "How many Flowable nodes to run."
  type        = number
  default     = 2
}

job "flowable" {
  type = "service"

  group "flowable" {
    count = var.count

    # A dynamic host port mapped to 8090 in the container: flowgate learns
    # the host address and port from Consul, so nothing is hard-coded.
    network {
      port "http" {
        to = 8090
      }
    }

    # Nomad registers the node, so the application must not register itself
    # as well (SPRING_CLOUD_CONSUL_DISCOVERY_REGISTER=false below): two
    # registrations of one node would be one upstream listed twice.
    service {
      name     = "flowable"
      provider = "consul"
      port     = "http"
      tags     = ["flowable"]

      meta {
        secure = "false"
      }

      check {
        name     = "Flowable actuator health"
        type     = "http"
        path     = "/actuator/health"
        interval = "10s"
        timeout  = "3s"

        # Spring Boot takes a while to start; do not count that as failure.
        check_restart {
          limit = 3
          grace = "120s"
        }
      }
    }

    # Deregister from Consul, then wait before stopping: flowgate drops the
    # node from its set first, so no new request goes to a stopping node.
    shutdown_delay = "10s"

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "30s"
      healthy_deadline = "10m"
      auto_revert      = true
    }

    task "flowable" {
      driver = "docker"

      config {
        image = var.image
        ports = ["http"]
      }

      env {
        SERVER_PORT                           = "8090"
        SPRING_CLOUD_CONSUL_DISCOVERY_REGISTER = "false"
        # flowgate sends X-Forwarded-Proto/Host/Port/For; let Spring build
        # https:// links from them.
        SERVER_FORWARD_HEADERS_STRATEGY = "framework"
      }

      kill_timeout = "30s"

      resources {
        cpu    = 2000
        memory = 2048
      }
    }
  }
}
