# syntax=docker/dockerfile:1
# Multi-stage build: a static resilienced on a distroless, non-root base.
#   docker build -t topdeck/resilienced .
#   docker run -p 50051:50051 -v $PWD/resilience.yaml:/etc/resilience.yaml:ro \
#     -e RESILIENCE_CONFIG=/etc/resilience.yaml -e RESILIENCE_REDIS_URL=redis://redis:6379 topdeck/resilienced
# The image listens on every interface, so it needs an auth: section in its
# config (docs/security.md) or TLS; RESILIENCE_INSECURE=true runs it open,
# for a local trial only.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/resilienced ./cmd/resilctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/resilienced /out/resilctl /usr/local/bin/
USER nonroot:nonroot
EXPOSE 50051 9090
ENV RESILIENCE_LISTEN=:50051 \
    RESILIENCE_METRICS_LISTEN=:9090 \
    RESILIENCE_LOG_FORMAT=json
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/resilienced", "--health-probe"]
ENTRYPOINT ["/usr/local/bin/resilienced"]
