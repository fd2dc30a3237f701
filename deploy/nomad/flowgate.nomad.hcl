# flowgate on Nomad: the HTTPS edge in front of the Flowable nodes of
# flowable.nomad.hcl, which it finds in Consul.
#
#   nomad job run -var 'server_name=flowable.example.com' deploy/nomad/flowgate.nomad.hcl
#
# Needs: Nomad clients with the Docker driver and a local Consul agent; Vault
# with a PKI secrets engine (see the tls templates below; Consul KV works
# too). The image is built from this repository's Dockerfile.

variable "image" {
  description = "The flowgate image, built from the repository's Dockerfile and pushed where the Nomad clients pull from."
  type        = string
  default     = "flowgate:latest"
}

variable "server_name" {
  description = "The host name browsers use; the certificate is issued for it and HTTP redirects point at it."
  type        = string
  default     = "flowable.example.com"
}

variable "vault_pki_role" {
  description = "Vault PKI issue path that signs flowgate's certificate."
  type        = string
  default     = "pki_int/issue/flowgate"
}

job "flowgate" {
  type = "service"

  group "edge" {
    # One flowgate per client node: the static ports below can be bound once
    # per host. Point DNS (or a layer-4 load balancer) at these hosts.
    count = 2

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Static ports: browsers come to 443 and 80 on the host. flowgate runs as
    # a non-root user inside the container and listens on 8443 and 8080; the
    # Docker driver maps host 443 -> 8443 and host 80 -> 8080 ("to"), so no
    # capability is needed. listen.public_https_port: 443 in the config makes
    # redirects and X-Forwarded-Port say 443, not 8443.
    #
    # To bind 443 directly instead (exec driver, or Docker with host
    # networking), drop "to", set listen.https to ":443" and give the task
    # CAP_NET_BIND_SERVICE.
    network {
      port "https" {
        static = 443
        to     = 8443
      }
      port "http" {
        static = 80
        to     = 8080
      }
      # The admin listener (metrics, /readyz) for Consul's check and for
      # Prometheus. Restrict it to the cluster network with a firewall.
      port "admin" {
        static = 9100
        to     = 9100
      }
    }

    # Nomad registers flowgate in Consul, so consul.register stays off in
    # the config below. The check asks /readyz: it fails while flowgate
    # starts and from the first moment of a shutdown.
    service {
      name     = "flowgate"
      provider = "consul"
      port     = "https"
      tags     = ["https", "edge"]

      meta {
        secure = "true"
      }

      check {
        name     = "flowgate readiness"
        type     = "http"
        port     = "admin"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    service {
      name     = "flowgate-metrics"
      provider = "consul"
      port     = "admin"
      tags     = ["prometheus"]
    }

    # Deregister from Consul first, then stop: clients stop coming before
    # flowgate stops accepting.
    shutdown_delay = "5s"

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "2m"
      auto_revert      = true
    }

    task "flowgate" {
      driver = "docker"

      config {
        image = var.image
        args  = ["run", "--config", "/local/flowgate.yaml"]
        ports = ["https", "http", "admin"]
      }

      env {
        # The Consul agent on this client; the container reaches it on the
        # host's address (Consul's client_addr must include it).
        CONSUL_HTTP_ADDR = "${attr.unique.network.ip-address}:8500"
        # Where the built-in issuer would keep its CA; unused while
        # certificates come from Vault.
        FLOWGATE_STATE_DIR = "/alloc/data/flowgate"
      }

      # Vault workload identity (Nomad 1.7+): the role grants "update" on
      # var.vault_pki_role.
      vault {
        role = "flowgate"
      }

      # The configuration. A change re-renders the file and sends SIGHUP:
      # flowgate re-reads it and keeps the running configuration if the new
      # one is invalid.
      template {
        destination   = "local/flowgate.yaml"
        perms         = "644"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOF
          listen:
            https: ":8443"
            http: ":8080"
            admin: ":9100"
            public_https_port: 443
          server_names:
            - ${var.server_name}
          tls:
            certificates:
              - cert_file: /secrets/tls/flowgate.crt
                key_file: /secrets/tls/flowgate.key
          consul:
            services:
              - flowable
          upstreams:
            static: []
          log:
            format: json
        EOF
      }

      # The certificate and its key, from Vault PKI. Both templates call
      # `secret` with identical arguments, so Nomad fetches ONE certificate
      # and writes its two halves; it renews it before it expires and
      # rewrites both files (to a temporary file, then a rename).
      #
      # change_mode = "noop": flowgate watches these files and swaps the
      # certificate in by itself, without a signal or restart and without
      # dropping a connection. It loads cert and key together and keeps the
      # old pair while only one of the two files has been rewritten.
      #
      # perms = "600" and uid/gid 65532 (the image's non-root user): the key
      # is readable by flowgate only. Nomad's default would be 0644.
      #
      # From Consul KV instead: data = "{{ key \"flowgate/tls/cert\" }}".
      template {
        destination = "secrets/tls/flowgate.crt"
        perms       = "600"
        uid         = 65532
        gid         = 65532
        change_mode = "noop"
        data        = <<-EOF
          {{ with secret "${var.vault_pki_role}" "common_name=${var.server_name}" "ttl=720h" }}{{ .Data.certificate }}
          {{ .Data.issuing_ca }}{{ end }}
        EOF
      }

      template {
        destination = "secrets/tls/flowgate.key"
        perms       = "600"
        uid         = 65532
        gid         = 65532
        change_mode = "noop"
        data        = <<-EOF
          {{ with secret "${var.vault_pki_role}" "common_name=${var.server_name}" "ttl=720h" }}{{ .Data.private_key }}{{ end }}
        EOF
      }

      # Longer than http.shutdown_timeout (30s), so in-flight requests finish.
      kill_timeout = "40s"
      kill_signal  = "SIGTERM"

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
