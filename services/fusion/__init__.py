"""The fusion orchestrator: ingest, the branches under deadlines, calibrated fusion."""
