"""Strict offline schema validation (the same code scripts/k8s_check.sh runs over every
overlay x component combination), and proof that it rejects what it should."""

from __future__ import annotations

import copy


def test_every_object_of_each_overlay_with_all_components_validates(k8s, full_render):
    assert k8s.validate(full_render, k8s.crd_schemas()) == []


def test_unknown_and_mistyped_fields_are_rejected(k8s, render):
    crds = k8s.crd_schemas()
    deployment = copy.deepcopy(next(o for o in render("cpu") if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {}
    assert any("grpcc" in e for e in k8s.validate([deployment], crds))
    hpa = copy.deepcopy(next(o for o in render("cpu") if o["kind"] == "HorizontalPodAutoscaler"))
    hpa["spec"]["minReplicas"] = "two"
    assert k8s.validate([hpa], crds)


def test_custom_resources_are_checked_against_the_kept_crd(k8s, render):
    crds = k8s.crd_schemas()
    assert ("monitoring.coreos.com/v1", "ServiceMonitor") in crds
    monitor = next(o for o in render("cpu", "servicemonitor") if o["kind"] == "ServiceMonitor")
    assert k8s.validate([monitor], crds) == []
    typo = copy.deepcopy(monitor)
    typo["spec"]["endpoints"][0]["intervall"] = "15s"
    assert any("intervall" in e for e in k8s.validate([typo], crds))
    bad_interval = copy.deepcopy(monitor)
    bad_interval["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert k8s.validate([bad_interval], crds)
    no_selector = copy.deepcopy(monitor)
    del no_selector["spec"]["selector"]
    assert k8s.validate([no_selector], crds)


def test_a_kind_without_any_schema_is_an_error(k8s):
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("no schema" in e for e in k8s.validate([unknown], k8s.crd_schemas()))
