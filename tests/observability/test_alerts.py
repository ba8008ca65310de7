"""The alert rules in k8s/components/alerts: promtool checks and unit-tests them (Debian's
`prometheus` package ships promtool); every series they read is declared in
dfmesh/runtime/metrics.py with the labels they group and filter by; the PrometheusRule and
the plain rule file hold the same groups; docs/OPERATIONS.md explains every alert."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.k8s.test_manifest_policy import declared_metrics, series_in
from tests.mesh import REPO_ROOT

ALERTS = REPO_ROOT / "k8s" / "components" / "alerts"
RULES = ALERTS / "dfmesh-rules.yaml"
# Labels Prometheus itself attaches to every scraped series.
TARGET_LABELS = {"namespace", "pod", "job", "instance"}


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not installed (apt-get install prometheus; scripts/setup.sh "
                    "does with DFMESH_SETUP_TEST_DEPS=1)")
    return binary


@pytest.mark.parametrize("command", [["check", "rules", RULES.name],
                                     ["test", "rules", "dfmesh-rules.test.yaml"]],
                         ids=["check", "test"])
def test_promtool_accepts_the_rules_and_their_unit_tests(command: list[str]) -> None:
    proc = subprocess.run([promtool(), *command], cwd=ALERTS, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_read_only_declared_series_and_labels() -> None:
    declared = declared_metrics()
    for rule in rules():
        expr = rule["expr"]
        used = series_in(expr)
        assert used, f"{rule['alert']} reads no deepfake_ series"
        assert used <= set(declared), f"{rule['alert']}: undeclared {used - set(declared)}"
        known = set().union(*(declared[s] for s in used)) | TARGET_LABELS
        grouped = {label.strip() for group in re.findall(r"by \(([^)]*)\)", expr)
                   for label in group.split(",")}
        matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*(?:=~|!=|!~|=)", expr))
        assert grouped | matched <= known, f"{rule['alert']}: {(grouped | matched) - known}"


def test_the_prometheusrule_holds_the_same_groups() -> None:
    plain = yaml.safe_load(RULES.read_text())["groups"]
    operator = yaml.safe_load((ALERTS / "prometheusrule.yaml").read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"]["groups"] == plain


def test_every_alert_has_a_runbook_entry() -> None:
    operations = (REPO_ROOT / "docs" / "OPERATIONS.md").read_text()
    headings = {m.lower() for m in re.findall(r"^#+ (\w+)", operations, re.MULTILINE)}
    for rule in rules():
        name = rule["alert"]
        assert name.lower() in headings, f"docs/OPERATIONS.md has no section {name}"
        assert f"OPERATIONS.md#{name.lower()}" in rule["annotations"]["description"]
        assert rule["labels"]["severity"] in ("warning", "critical")
