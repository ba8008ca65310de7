"""A branch's `python -m services.<branch>` as a real process: SERVING on its configured
port after load, clean exit on SIGTERM; a tampered artifact stops it with a clear message; a
service started with DFMESH_EXIT_WITH_PID stops by itself once that process is gone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dfmesh.preprocess import mouth, waveform
from tests.branch_support import REPO_ROOT, build_model

BRANCH_MODELS = {
    "tiny_gate": ({"patches": ["N", 3, 32, 32]}, ()),
    "visual": ({"image": ["N", 3, 224, 224]}, ("embedding",)),
    "mri": ({"image": ["N", 3, 256, 256]}, ("mri_map",)),
    "audio": ({"waveform": ["N", waveform.WINDOW_SAMPLES]}, ()),
    "temporal": ({"embeddings": [1, "T", 8]}, ()),
    "sync": ({"mouth": ["N", mouth.WINDOW_FRAMES, mouth.MOUTH_SIZE, mouth.MOUTH_SIZE],
              "audio": ["N", mouth.N_MELS, mouth.MEL_FRAMES]}, ()),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(branch: str, repo: Path, port: int, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "DFMESH_MODEL_REPO": str(repo), "DFMESH_PORT": str(port),
           "DFMESH_METRICS_PORT": "0", "DFMESH_GRACE_SECONDS": "1", "OMP_NUM_THREADS": "1",
           **extra_env}
    return subprocess.Popen([sys.executable, "-m", f"services.{branch}"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_serving(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(
                    service="deepfake.v1.BranchService"), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return status
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("branch", ["tiny_gate", "temporal"])
def test_branch_process_serves_and_drains_on_sigterm(tmp_path, branch: str) -> None:
    inputs, extra = BRANCH_MODELS[branch]
    build_model(tmp_path / branch / "1.0.0", branch, inputs,
                dict.fromkeys(inputs, "ReduceMean"), extra_outputs=extra)
    port = free_port()
    proc = start(branch, tmp_path, port)
    try:
        serving = wait_serving(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert serving == health_pb2.HealthCheckResponse.SERVING, err
    assert proc.returncode == 0, err
    assert '"message": "warm-up done"' in out + err
    assert '"message": "draining"' in out + err


def test_tampered_artifact_stops_the_process(tmp_path) -> None:
    inputs, _ = BRANCH_MODELS["tiny_gate"]
    artifact = build_model(tmp_path / "tiny_gate" / "1.0.0", "tiny_gate", inputs,
                           dict.fromkeys(inputs, "ReduceMean")) / "model.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    proc = start("tiny_gate", tmp_path, free_port())
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "refusing to start: checksum mismatch" in out + err


def test_service_stops_when_its_launcher_is_gone(tmp_path) -> None:
    inputs, _ = BRANCH_MODELS["tiny_gate"]
    build_model(tmp_path / "tiny_gate" / "1.0.0", "tiny_gate", inputs,
                dict.fromkeys(inputs, "ReduceMean"))
    launcher = subprocess.Popen(["sleep", "300"])  # stands in for a pytest that dies
    port = free_port()
    proc = start("tiny_gate", tmp_path, port, DFMESH_EXIT_WITH_PID=str(launcher.pid))
    try:
        assert wait_serving(port, proc) == health_pb2.HealthCheckResponse.SERVING
        time.sleep(1.5)
        assert proc.poll() is None, "stopped while its launcher was alive"
        launcher.kill()
        launcher.wait()
        out, err = proc.communicate(timeout=15)
    finally:
        launcher.kill()
        proc.kill()
    assert proc.returncode == 0, err
    assert "launcher process" in out + err and '"message": "draining"' in out + err
