"""The shared service runtime: everything every service process needs, in one place.

- `config`: typed settings from environment variables, checked at start-up.
- `errors`: the domain exception tree and the interceptor mapping it to gRPC status codes.
- `server`: the grpc.aio server factory and the serve loop (health, reflection, drain).
- `channels`: outgoing channels with size limits, keepalive, round-robin and tracing.
- `logging`, `metrics`, `tracing`: JSON logs, Prometheus metrics, OpenTelemetry.
- `model_repo`: the model repository format (manifests, checksums).
"""
