"""The REST gateway: HTTP and the web UI in front of the fusion orchestrator (gRPC only).

    settings    GatewaySettings (DFMESH_* environment variables)
    errors      ApiError and the gRPC status -> HTTP status mapping
    uploads     the multipart upload read as a stream, size counting, magic-byte sniffing
    fusion      one Analyze call to the orchestrator: upload chunks out, events in
    store       analysis state: in memory, or in Redis so any replica answers for any analysis
    analyses    running an analysis in the background and recording its progress
    routes      the HTTP API; app builds the FastAPI application and serves the web UI
"""
