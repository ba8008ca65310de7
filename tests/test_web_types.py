"""The web UI's TypeScript types of the REST API (web/src/generated/api.ts) are what
scripts/gen_web_types.py makes from the gateway's /openapi.json now."""

from __future__ import annotations

import subprocess
import sys

from dfmesh.runtime.config import REPO_ROOT


def test_generated_web_types_are_current() -> None:
    done = subprocess.run([sys.executable, "scripts/gen_web_types.py", "--check"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_openapi_document_lists_the_event_data() -> None:
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    schemas = create_app(GatewaySettings()).openapi()["components"]["schemas"]
    event = schemas["ProgressEvent"]
    assert event["properties"]["branchState"]["enum"] == [
        "", "OK", "FALLBACK", "NO_INPUT", "MISSING", "NOT_RUN"]
    assert schemas["AnalysisResult"]["properties"]["clip"]["anyOf"][0] == {
        "$ref": "#/components/schemas/ClipInfo"}
