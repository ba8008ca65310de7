"""The branch registry (dfmesh.branches) and what is derived from it: feature columns in the
bundle's order, ports, start order with dependencies, which branches run on which files."""

from __future__ import annotations

import pytest

from dfmesh import branches
from dfmesh.runtime.config import DEFAULT_PORTS, GRPC_START_ORDER, SERVICES


def test_feature_columns_keep_the_bundle_order() -> None:
    assert branches.FEATURE_COLS == (
        "tiny_prob_mean", "tiny_prob_max", "tiny_prob_p90", "tiny_num_files", "tiny_num_patches",
        "visual_prob_mean", "visual_prob_max", "visual_prob_p90", "visual_num_faces",
        "audio_prob_fake", "temporal_prob_fake", "sync_prob")
    assert branches.LR_BRANCHES == ("tiny_gate", "visual", "audio", "temporal", "sync")
    assert branches.BRANCH_FEATURES["mri"] == ("mri_prob_mean", "mri_prob_max", "mri_prob_p90")


def test_ports_and_services_come_from_the_registry() -> None:
    assert ("gateway", "fusion", "ingest", *branches.BRANCH_NAMES) == SERVICES
    assert {b.name: DEFAULT_PORTS[b.name] for b in branches.BRANCHES} == {
        "tiny_gate": 50053, "visual": 50054, "audio": 50055, "temporal": 50056, "sync": 50057,
        "mri": 50058}
    assert len(set(DEFAULT_PORTS.values())) == len(DEFAULT_PORTS)


def test_a_branch_starts_after_what_it_depends_on() -> None:
    order = branches.start_order()
    assert order.index("visual") < order.index("temporal")
    assert ("ingest", *order, "fusion") == GRPC_START_ORDER
    assert branches.with_dependencies(("temporal",)) == ("visual", "temporal")
    assert branches.with_dependencies(("mri",)) == ("mri",)


def test_which_branches_run_on_which_files() -> None:
    assert branches.runs_on("IMAGE") == ("tiny_gate", "visual", "mri")
    assert branches.runs_on("AUDIO") == ("audio",)
    assert branches.runs_on("VIDEO") == branches.BRANCH_NAMES


def test_feeds_close_after_their_last_packet() -> None:
    last = {b.name: b.last_packet for b in branches.BRANCHES}
    assert last == {"tiny_gate": "frame", "visual": "frame", "mri": "frame", "audio": "audio",
                    "sync": "audio", "temporal": None}


def test_an_unknown_branch_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: tiny_gate, visual"):
        branches.branch("lidar")
