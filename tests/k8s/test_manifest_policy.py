"""Policy over the rendered manifests: what every Deployment, Service and HPA must have, and
that ports, environment, metrics and images agree with the code that runs in them."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from dfmesh.branches import BRANCH_NAMES, BRANCHES
from dfmesh.runtime.config import DEFAULT_PORTS, METRICS_PORT_OFFSET

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "dfmesh"
GPU_BRANCHES = {b.name for b in BRANCHES if b.gpu}
HEADLESS_COMPONENTS = {"branch", "ingest", "orchestrator"}


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def service_key(k8s_name: str) -> str:
    """DNS-safe object name -> the service's name in code (tiny-gate -> tiny_gate)."""
    return k8s_name.replace("-", "_")


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def env_of(deployment: dict, objects: list[dict]) -> dict[str, str]:
    """Every variable the container gets: envFrom ConfigMaps, then env."""
    c, maps = container(deployment), of_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e.get("value", "") for e in c.get("env", [])})
    return env


# ---------------------------------------------------------------- every workload

def test_every_container_has_probes_resources_and_a_locked_down_security_context(full_render):
    for name, dep in of_kind(full_render, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{name}/{c['name']} lacks {probe}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name} {kind}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["runAsNonRoot"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be an emptyDir"
            tag = c["image"].rsplit(":", 1)
            assert len(tag) == 2 and tag[1] not in ("", "latest"), f"{name}: pin the image tag"


def test_every_deployment_has_service_account_service_pdb_hpa_and_spread(full_render):
    deployments = of_kind(full_render, "Deployment")
    accounts = of_kind(full_render, "ServiceAccount")
    services = of_kind(full_render, "Service")
    pdbs = [p["spec"]["selector"]["matchLabels"] for p in of_kind(full_render,
                                                                   "PodDisruptionBudget").values()]
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"]
                   for h in of_kind(full_render, "HorizontalPodAutoscaler").values()}
    assert set(deployments) == {n.replace("_", "-") for n in DEFAULT_PORTS}
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert pod["serviceAccountName"] in accounts, name
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        assert name in services, f"{name} has no Service"
        assert services[name]["spec"]["selector"].items() <= labels.items(), name
        assert any(sel.items() <= labels.items() for sel in pdbs), f"{name} has no PDB"
        assert name in hpa_targets, f"{name} has no HPA"
        assert "replicas" not in dep["spec"], f"{name}: the HPA owns the replica count"
        keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, name
        # SIGTERM drain (DFMESH_GRACE_SECONDS) plus the preStop pause fit in the grace period.
        grace = float(env_of(dep, full_render).get("DFMESH_GRACE_SECONDS", 0))
        pause = container(dep)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > grace + pause, name


def test_every_namespaced_object_lands_in_the_mesh_namespace(full_render):
    namespaces = of_kind(full_render, "Namespace")
    assert set(namespaces) == {NAMESPACE}
    assert namespaces[NAMESPACE]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] \
        == "restricted"
    for obj in full_render:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


# ---------------------------------------------------------------- autoscaling

def test_every_hpa_targets_an_existing_deployment_and_scales_down_slowly(full_render):
    deployments = of_kind(full_render, "Deployment")
    hpas = of_kind(full_render, "HorizontalPodAutoscaler")
    assert hpas, "no HorizontalPodAutoscaler rendered"
    for name, hpa in hpas.items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment"), name
        assert ref["name"] in deployments, f"HPA {name} targets missing Deployment {ref['name']}"
        spec = hpa["spec"]
        assert 1 <= spec["minReplicas"] < spec["maxReplicas"], name
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300, name
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu"
                   for m in spec["metrics"]), f"{name}: CPU is the floor metric"


def test_gpu_branches_stay_warm_and_on_gpu_nodes(render):
    objects = render("gpu")
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    for name, dep in of_kind(objects, "Deployment").items():
        c, pod = container(dep), dep["spec"]["template"]["spec"]
        limits, requests = c["resources"]["limits"], c["resources"]["requests"]
        if name in GPU_BRANCHES:
            assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == "1", name
            assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true", name
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} \
                in pod["tolerations"], name
            assert c["image"].startswith(f"dfmesh/{name}-gpu:"), name
            assert env_of(dep, objects)["DFMESH_EXECUTION_PROVIDER"] == "cuda", name
            assert hpas[name]["spec"]["minReplicas"] >= 1, f"{name} must keep a warm replica"
        else:
            assert "nvidia.com/gpu" not in limits, name
            assert "-gpu:" not in c["image"], name
    for name, dep in of_kind(render("cpu"), "Deployment").items():
        assert "nvidia.com/gpu" not in container(dep)["resources"]["limits"], name


# ---------------------------------------------------------------- gRPC load balancing, ports

def test_grpc_services_are_headless_so_clients_round_robin(full_render):
    for name, svc in of_kind(full_render, "Service").items():
        component = svc["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in HEADLESS_COMPONENTS:
            assert svc["spec"].get("clusterIP") == "None", f"{name} must be headless"


def test_ports_match_the_services_configuration(full_render):
    services = of_kind(full_render, "Service")
    for name, dep in of_kind(full_render, "Deployment").items():
        port = DEFAULT_PORTS[service_key(name)]
        c, env = container(dep), env_of(dep, full_render)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        svc_ports = {p["name"]: p["port"] for p in services[name]["spec"]["ports"]}
        assert int(env["DFMESH_PORT"]) == port, name
        if name == "gateway":
            assert ports == svc_ports == {"http": port}
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            continue
        metrics_port = port + METRICS_PORT_OFFSET
        assert ports == svc_ports == {"grpc": port, "metrics": metrics_port}, name
        assert int(env["DFMESH_METRICS_PORT"]) == metrics_port, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == port, f"{name} {probe}"


def test_mesh_addresses_resolve_to_headless_services_on_the_right_ports(full_render):
    services = of_kind(full_render, "Service")
    pattern = re.compile(rf"^dns:///([a-z0-9-]+)\.{NAMESPACE}\.svc\.cluster\.local:(\d+)$")
    seen = set()
    for name, dep in of_kind(full_render, "Deployment").items():
        for var, value in env_of(dep, full_render).items():
            if not var.endswith("_ADDR"):
                continue
            target = var.removeprefix("DFMESH_").removesuffix("_ADDR").lower()
            match = pattern.match(value)
            assert match, f"{name} {var}={value}: use dns:///<svc>.{NAMESPACE}.svc.cluster.local"
            svc, port = match.group(1), int(match.group(2))
            assert service_key(svc) == target and port == DEFAULT_PORTS[target], f"{var}={value}"
            assert services[svc]["spec"]["clusterIP"] == "None", f"{svc} must be headless"
            seen.add((name, target))
    assert {t for n, t in seen if n == "fusion"} == {"ingest", *BRANCH_NAMES}
    assert {t for n, t in seen if n == "gateway"} == {"fusion"}


# ---------------------------------------------------------------- environment vs settings

def settings_class(service: str) -> type:
    """The settings class a service's __main__ passes to the runtime, found by reading the
    module's imports (importing __main__ itself would pull in the whole service)."""
    main = (REPO_ROOT / "gateway" / "__main__.py" if service == "gateway"
            else REPO_ROOT / "services" / service / "__main__.py")
    if not main.is_file():
        pytest.skip(f"{main.relative_to(REPO_ROOT)} does not exist yet")
    for node in ast.walk(ast.parse(main.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if alias.name.endswith("Settings") and alias.name != "ServiceSettings":
                    return getattr(importlib.import_module(node.module), alias.name)
    raise AssertionError(f"{main}: no *Settings class imported")


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS))
def test_every_variable_set_is_a_settings_field(render, service):
    objects = render("gpu", "custom-metrics")  # the overlay that sets the most variables
    dep = of_kind(objects, "Deployment")[service.replace("_", "-")]
    cls = settings_class(service)
    prefix = cls.model_config.get("env_prefix", "")
    fields = {(prefix + f).upper() for f in cls.model_fields}
    unknown = sorted(set(env_of(dep, objects)) - fields)
    assert not unknown, f"{service}: {unknown} are not fields of {cls.__name__}"
    settings = cls(**{k.removeprefix(prefix).lower(): v
                      for k, v in env_of(dep, objects).items()})
    assert settings.grpc_port == DEFAULT_PORTS[service]


# ---------------------------------------------------------------- network policies

def policies_for(labels: dict[str, str], policies: list[dict]) -> list[dict]:
    def selects(selector: dict) -> bool:
        for k, v in selector.get("matchLabels", {}).items():
            if labels.get(k) != v:
                return False
        for e in selector.get("matchExpressions", []):
            if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
                return False
        return True
    return [p for p in policies if selects(p["spec"]["podSelector"])]


def allowed_peers(labels: dict[str, str], port: str, policies: list[dict]) -> list[dict]:
    """Every `from` peer any policy lets reach the named port; {} means anyone."""
    peers = []
    for policy in policies_for(labels, policies):
        for rule in policy["spec"].get("ingress", []):
            if any(p["port"] == port for p in rule.get("ports", [{"port": port}])):
                peers.extend(rule.get("from", [{}]))
    return peers


def test_network_policies_let_only_the_orchestrator_reach_branches_and_ingest(render):
    objects = render("cpu", "network-policies")
    policies = list(of_kind(objects, "NetworkPolicy").values())
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies), \
        "a default-deny ingress policy"
    fusion = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "fusion"}}}
    monitoring = {"namespaceSelector": {"matchLabels":
                                        {"kubernetes.io/metadata.name": "monitoring"}}}
    for name, dep in of_kind(objects, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        component = labels["app.kubernetes.io/component"]
        if component in ("branch", "ingest"):
            assert allowed_peers(labels, "grpc", policies) == [fusion], name
        elif component == "orchestrator":
            peers = allowed_peers(labels, "grpc", policies)
            assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}} in peers
            internal = [p for p in peers if "namespaceSelector" in p]
            assert internal == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
                "dfmesh.io/internal-client": "true"}}}], "internal clients must carry the label"
            assert len(peers) == 2
        else:
            assert allowed_peers(labels, "http", policies) == [{}], "the gateway is public"
        if component != "gateway":
            assert allowed_peers(labels, "metrics", policies) == [monitoring], name


# ---------------------------------------------------------------- metrics, dashboard, images

def declared_metrics() -> dict[str, set[str]]:
    """Series dfmesh/runtime/metrics.py exports -> their label names (histograms as
    _bucket/_sum/_count, with `le` on buckets)."""
    tree = ast.parse((REPO_ROOT / "dfmesh" / "runtime" / "metrics.py").read_text())
    series: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("Counter", "Gauge", "Histogram", "Summary")):
            continue
        name = node.args[0].value
        labels_node = node.args[2] if len(node.args) > 2 else next(
            (k.value for k in node.keywords if k.arg == "labelnames"), None)
        labels = {e.value for e in labels_node.elts} if labels_node is not None else set()
        if node.func.id in ("Histogram", "Summary"):
            series |= {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels,
                       f"{name}_count": labels}
        else:
            series[name] = labels
    return series


def declared_series() -> set[str]:
    return set(declared_metrics())


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(deepfake_[a-z0-9_]+)", expr))


def test_custom_metrics_have_adapter_rules_over_declared_series(render):
    values = yaml.safe_load((REPO_ROOT / "k8s/components/custom-metrics/"
                             "prometheus-adapter-values.yaml").read_text())
    rules = values["rules"]["custom"]
    provided = {r["name"]["as"] for r in rules}
    declared = declared_series()
    for rule in rules:
        used = series_in(rule["seriesQuery"]) | series_in(rule["metricsQuery"])
        assert used and used <= declared, f"undeclared series in adapter rule: {used - declared}"
    asked = set()
    for hpa in of_kind(render("cpu", "custom-metrics"), "HorizontalPodAutoscaler").values():
        asked |= {m["pods"]["metric"]["name"]
                  for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert asked and asked <= provided, f"HPA metrics without an adapter rule: {asked - provided}"


def test_dashboard_queries_only_declared_series(render):
    maps = of_kind(render("cpu", "grafana-dashboard"), "ConfigMap")
    board = maps["dfmesh-grafana-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(board["data"]["dfmesh-dashboard.json"])
    declared = declared_series()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    labels = declared_metrics()
    for expr in exprs:
        used = series_in(expr)
        assert used <= declared, f"undeclared series: {used - declared}"
        assert used or expr.startswith("kube_horizontalpodautoscaler_"), expr
        # Prometheus adds namespace and pod; everything else grouped by must be exported
        known = set().union(*(labels[s] for s in used)) | {"namespace", "pod"} if used else None
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert known is None or label in known, f"{expr}: no label {label!r}"


def test_servicemonitor_scrapes_named_ports_that_exist(render):
    objects = render("cpu", "servicemonitor")
    monitor = of_kind(objects, "ServiceMonitor")["dfmesh"]
    port_names = {p["name"] for s in of_kind(objects, "Service").values()
                  for p in s["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
    for name, svc in of_kind(objects, "Service").items():
        assert monitor["spec"]["selector"]["matchLabels"].items() \
            <= svc["metadata"]["labels"].items(), f"{name} is not scraped"


def dockerfile_targets() -> dict[str, list[str]]:
    """Dockerfile target -> its lines."""
    targets: dict[str, list[str]] = {}
    current = None
    for line in (REPO_ROOT / "docker" / "Dockerfile").read_text().splitlines():
        m = re.match(r"FROM \S+ AS (\S+)$", line)
        if m:
            current = m.group(1)
            targets[current] = []
        elif current:
            targets[current].append(line)
    return targets


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_every_image_is_a_dockerfile_target_serving_that_service(render, overlay):
    targets = dockerfile_targets()
    for name, dep in of_kind(render(overlay), "Deployment").items():
        image = container(dep)["image"].split(":")[0]
        target = image.removeprefix("dfmesh/")
        assert target in targets, f"{image}: no Dockerfile target {target}"
        lines = targets[target]
        module = "gateway" if name == "gateway" else f"services.{service_key(name)}"
        assert f'ENTRYPOINT ["python", "-m", "{module}"]' in lines, target
        assert "USER 10001:10001" in lines, target
        port = DEFAULT_PORTS[service_key(name)]
        exposed = {p for line in lines if line.startswith("EXPOSE") for p in line.split()[1:]}
        expected = {str(port)} if name == "gateway" else {str(port),
                                                          str(port + METRICS_PORT_OFFSET)}
        assert exposed == expected, target
        uid = dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        assert uid == 10001, name
