# flowgate container image.
#
#   docker build --build-arg VERSION=1.2.3 -t flowgate:1.2.3 .
#   docker run -p 443:8443 -p 80:8080 -e FLOWGATE_UPSTREAM=flowable01:8090 flowgate:1.2.3
#
# The builder runs .ci/build.sh, the same command CI uses, so the binary in
# the image is the binary the tests built. The runtime image is distroless:
# no shell, no package manager, a non-root user (65532), CA certificates for
# HTTPS upstreams and Consul.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN VERSION="${VERSION}" OUT=/out/flowgate bash .ci/build.sh \
 && install -d -m 0700 /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/flowgate /flowgate
# The state directory (the built-in CA and its certificates) belongs to the
# non-root user; a named volume mounted there inherits that ownership.
COPY --from=build --chown=65532:65532 /out/state /var/lib/flowgate
ENV FLOWGATE_STATE_DIR=/var/lib/flowgate
USER 65532:65532
# 8443 HTTPS, 8080 HTTP (redirect to HTTPS, CA download), 9100 admin
# (metrics, /readyz, /status). The admin listener binds 127.0.0.1:9100 by
# default: the HEALTHCHECK below runs inside the container's network
# namespace and reaches it there. To scrape metrics from outside, set
# FLOWGATE_ADMIN_ADDR=:9100 and publish the port.
EXPOSE 8443 8080 9100
VOLUME ["/var/lib/flowgate"]
# `flowgate health` asks the admin /readyz; no shell or curl needed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/flowgate", "health"]
ENTRYPOINT ["/flowgate"]
CMD ["run"]
