"""Render the kind overlay for `podman kube play --network host`: the mesh on one machine.

What changes from the rendered overlay, and why (nothing else does: images, commands,
security contexts, resources, probes, environment and volumes are the overlay's):

- Only the objects podman plays are kept: the ConfigMap and the Deployments (one replica
  each; podman has no Services, HPAs, PDBs or ServiceAccounts).
- emptyDir volumes get the Deployment's name in front (`visual-tmp`): podman 4.3 makes an
  emptyDir a named volume, shared by every pod that uses the same volume name.
- A Secret volume becomes a read-only hostPath directory `<secrets-dir>/<secretName>` holding
  the Secret's files (the gateway's API keys), or is left out when no secrets dir is given
  and the Secret is optional, as in a cluster without it. Podman 4.3 ignores Secret volumes
  marked optional and writes a Secret's `data` without base64-decoding it (podman issue
  16636), so its own Secret support cannot stand in for the cluster's.
- Every pod shares the host's network, so the headless-Service addresses
  (`dns:///<svc>.<ns>.svc.cluster.local:<port>`) become `127.0.0.1:<port>`.
- With `--port-offset N`, every port (probes, DFMESH_*PORT, addresses) moves up
  by N, so the played mesh can run beside a `dfmesh up` on the default ports.
- Container `ports` lists are dropped (podman 4.3 turns them into port mappings, which host
  networking refuses); a probe that names a port gets its number.
- Fields podman does not know (topology spread, the ServiceAccount name) are dropped.

    .venv/bin/python scripts/k8s_podman.py --port-offset 10000 --secrets-dir DIR > /tmp/mesh.yaml
    CONTAINERS_CONF=docker/podman/containers.conf podman kube play --network host /tmp/mesh.yaml
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# Run as `python scripts/k8s_podman.py`, scripts/ is first on the import path; the tests load it
# through devkit.scripts, which registers k8s_manifests under that name first.
from k8s_manifests import K8S, Manifest, render_dir

KEPT_KINDS = ("ConfigMap", "Deployment")
DROPPED_POD_FIELDS = ("serviceAccountName", "topologySpreadConstraints")
ADDRESS = re.compile(r"^dns:///[a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local:(\d+)$")


def _shift_port(value: Any, offset: int) -> Any:
    return value + offset if isinstance(value, int) else value


def _shift_probe(probe: dict[str, Any] | None, offset: int) -> None:
    if not probe:
        return
    for handler in ("grpc", "httpGet", "tcpSocket"):
        if handler in probe:
            probe[handler]["port"] = _shift_port(probe[handler]["port"], offset)


def _resolve_probe_port(probe: dict[str, Any] | None, named: dict[str, int]) -> None:
    for handler in ("grpc", "httpGet", "tcpSocket"):
        if probe and handler in probe and isinstance(probe[handler]["port"], str):
            probe[handler]["port"] = named[probe[handler]["port"]]


def _rewrite_env(env: list[dict[str, Any]], offset: int) -> None:
    for var in env:
        value = var.get("value")
        if value is None:
            continue
        match = ADDRESS.match(value)
        if match:
            var["value"] = f"127.0.0.1:{int(match.group(1)) + offset}"
        elif var["name"].endswith("PORT") and value.isdigit() and value != "0":
            var["value"] = str(int(value) + offset)


def _rewrite_volumes(name: str, pod: dict[str, Any], secrets_dir: Path | None) -> None:
    renamed: dict[str, str | None] = {}
    volumes = []
    for volume in pod.get("volumes", []):
        if "emptyDir" in volume:
            renamed[volume["name"]] = f"{name}-{volume['name']}"
            volumes.append(dict(volume, name=renamed[volume["name"]]))
        elif "secret" in volume:
            secret = volume["secret"]
            if secrets_dir is None:
                if not secret.get("optional"):
                    raise SystemExit(f"{name}: Secret {secret['secretName']} is required; "
                                     "give --secrets-dir")
                renamed[volume["name"]] = None
                continue
            path = secrets_dir / secret["secretName"]
            volumes.append({"name": volume["name"],
                            "hostPath": {"path": str(path), "type": "Directory"}})
        else:
            volumes.append(volume)
    pod["volumes"] = volumes
    for container in pod["containers"]:
        mounts = []
        for mount in container.get("volumeMounts", []):
            new = renamed.get(mount["name"], mount["name"])
            if new is not None:
                mounts.append(dict(mount, name=new))
        container["volumeMounts"] = mounts


def podman_deployment(deployment: Manifest, offset: int = 0,
                      secrets_dir: Path | None = None) -> Manifest:
    """One Deployment made playable on one host (see the module docstring)."""
    out = copy.deepcopy(deployment)
    out["spec"]["replicas"] = 1
    pod = out["spec"]["template"]["spec"]
    for field in DROPPED_POD_FIELDS:
        pod.pop(field, None)
    _rewrite_volumes(out["metadata"]["name"], pod, secrets_dir)
    for container in pod["containers"]:
        named = {p["name"]: p["containerPort"] for p in container.pop("ports", []) if "name" in p}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            _resolve_probe_port(container.get(probe), named)
            _shift_probe(container.get(probe), offset)
        _rewrite_env(container.get("env", []), offset)
    return out


def podman_objects(overlay: str = "kind", offset: int = 0,
                   secrets_dir: Path | None = None) -> list[Manifest]:
    """The overlay rendered and adapted for `podman kube play --network host`."""
    objects = render_dir(K8S / "overlays" / overlay)
    out: list[Manifest] = []
    for obj in objects:
        if obj["kind"] == "Deployment":
            out.append(podman_deployment(obj, offset, secrets_dir))
        elif obj["kind"] in KEPT_KINDS:
            out.append(obj)
    if not any(o["kind"] == "Deployment" for o in out):
        raise SystemExit(f"overlay {overlay!r} renders no Deployment")
    return out


def deployment_ports(objects: list[Manifest]) -> dict[str, list[int]]:
    """Deployment name -> the ports its services listen on (DFMESH_PORT first, then the
    metrics port): what must be free on the host."""
    return {o["metadata"]["name"]: [int(e["value"]) for c in o["spec"]["template"]["spec"]
                                    ["containers"] for e in c.get("env", [])
                                    if e["name"] in ("DFMESH_PORT", "DFMESH_METRICS_PORT")]
            for o in objects if o["kind"] == "Deployment"}


def podman_volumes(objects: list[Manifest]) -> list[str]:
    """The named volumes podman makes for the emptyDirs (`podman kube down` keeps them)."""
    return [v["name"] for o in objects if o["kind"] == "Deployment"
            for v in o["spec"]["template"]["spec"].get("volumes", []) if "emptyDir" in v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlay", default="kind", help="overlay under k8s/overlays")
    parser.add_argument("--port-offset", type=int, default=0,
                        help="add this to every port (default 0: the manifests' ports)")
    parser.add_argument("--secrets-dir", type=Path, default=None,
                        help="a directory with one folder of files per Secret the pods mount "
                             "(e.g. DIR/dfmesh-api-keys/api-keys)")
    args = parser.parse_args(argv)
    if not 0 <= args.port_offset <= 10000:
        parser.error("--port-offset must be between 0 and 10000")
    if args.secrets_dir is not None and not args.secrets_dir.is_dir():
        parser.error(f"--secrets-dir {args.secrets_dir} is not a directory")
    secrets_dir = args.secrets_dir.resolve() if args.secrets_dir else None
    sys.stdout.write(yaml.safe_dump_all(
        podman_objects(args.overlay, args.port_offset, secrets_dir), sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
