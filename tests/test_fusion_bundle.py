"""The shipped fusion bundle: structure, checksum, and that the fusion service's loader takes it."""

from __future__ import annotations

import json
from itertools import combinations

import pytest

from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from dfmesh.runtime.errors import ModelIntegrityError
from dfmesh.runtime.model_repo import load_verified, sha256_file
from tests.conftest import REPO_ROOT

MODELS = REPO_ROOT / "models"
LR_BRANCHES = ("tiny_gate", "visual", "audio", "temporal", "sync")


@pytest.fixture(scope="module")
def bundle() -> dict:
    joblib = pytest.importorskip("joblib")
    if not (MODELS / "fusion").is_dir():
        pytest.skip("no fusion bundle in models/ (train it: python -m training train "
                    "--branch fusion)")
    manifest = load_verified(MODELS, "fusion")   # checksum first: joblib is a pickle
    assert manifest.format == "joblib"
    return joblib.load(manifest.artifact_path)


def test_manifest_checksum_matches_the_artifact() -> None:
    if not (MODELS / "fusion").is_dir():
        pytest.skip("no fusion bundle in models/")
    manifest = load_verified(MODELS, "fusion")
    assert sha256_file(manifest.artifact_path) == manifest.sha256
    data = json.loads((manifest.directory / "manifest.json").read_text())
    assert data["artifact"] == "fusion.joblib" and data["branch"] == "fusion"


def test_top_level_is_the_calibrated_12_feature_head(bundle: dict) -> None:
    assert bundle["feature_cols"] == list(FEATURE_COLS)
    assert len(bundle["feature_cols"]) == 12
    assert bundle["temperature"] > 0
    # from 2.0.0 the threshold is fitted: it flags about 5% of held-out real files
    manifest = load_verified(MODELS, "fusion")
    assert 0.0 < bundle["threshold"] < 1.0
    assert bundle["threshold"] == pytest.approx(manifest.extra["threshold"])
    assert 0.0 <= bundle["early_exit_threshold"] <= bundle["threshold"]
    assert bundle["model"].n_features_in_ == 12


def test_every_subset_head_is_present_and_well_formed(bundle: dict) -> None:
    # a head for every subset of a modality family's branches that real files have: the face
    # head (visual alone from 2.6.0), the audio head, and the full 5-way head at the top
    possible = {"+".join(sorted(c)) for k in range(1, 6) for c in combinations(LR_BRANCHES, k)}
    full_key = "+".join(sorted(LR_BRANCHES))
    assert set(bundle["heads"]) <= possible
    assert {"audio", "visual", full_key} <= set(bundle["heads"])
    for key, head in bundle["heads"].items():
        branches = key.split("+")
        wanted = [c for c in FEATURE_COLS if any(c in BRANCH_FEATURES[b] for b in branches)]
        assert head["feature_cols"] == wanted, key
        assert head["temperature"] > 0, key
        assert sorted(head["branches"]) == sorted(branches)
        assert set(head["reads"]) <= set(branches), key
        assert head["model"].n_features_in_ == len(wanted)
    full = bundle["heads"][full_key]
    assert full["model"] is bundle["model"]  # the top level is the 5-way head itself
    # no file has every branch, so the 5-way head is the face head's stand-in and says so
    assert full["reads"] == bundle["reads"] == ["visual"]


def test_adaptive_temperatures_cover_every_branch_including_mri(bundle: dict) -> None:
    temps = bundle["adaptive"]["temperatures"]
    assert set(temps) == {*LR_BRANCHES, "mri"}
    assert all(t > 0 for t in temps.values())


def test_fusion_service_loader_accepts_it_and_refuses_a_tampered_copy(tmp_path) -> None:
    fusion = pytest.importorskip("services.fusion.fusion")
    if not (MODELS / "fusion").is_dir():
        pytest.skip("no fusion bundle in models/")
    loaded = fusion.load_bundle(MODELS)
    real_like = {"tiny_prob_mean": 0.2, "tiny_prob_max": 0.6, "tiny_prob_p90": 0.4,
                 "tiny_num_files": 16.0, "tiny_num_patches": 1024.0, "visual_prob_mean": 0.1,
                 "visual_prob_max": 0.3, "visual_prob_p90": 0.2, "visual_num_faces": 16.0,
                 "audio_prob_fake": 0.2, "temporal_prob_fake": 0.1, "sync_prob": 0.8}
    p = loaded.full.probability(real_like)
    assert 0.0 < p < 1.0
    version = load_verified(MODELS, "fusion")
    copy = tmp_path / "fusion" / version.version
    copy.mkdir(parents=True)
    (copy / "manifest.json").write_text((version.directory / "manifest.json").read_text())
    payload = version.artifact_path.read_bytes()
    (copy / "fusion.joblib").write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))
    with pytest.raises(ModelIntegrityError):
        fusion.load_bundle(tmp_path)
