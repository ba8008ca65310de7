"""Training on real labelled media: manifests, source-disjoint folds, ingest-made packs,
the shared fine-tuning loop, the visual sampler, and leave-one-source-out fusion."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dfmesh.preprocess.geometry import FACE_CROP_SIZE  # noqa: E402
from dfmesh.preprocess.stats import FEATURE_COLS, column_logits  # noqa: E402
from dfmesh.runtime.errors import ModelIntegrityError  # noqa: E402
from services.fusion.fusion import bundle_from_dict  # noqa: E402
from services.fusion.heads import FULL_HEAD_KEY, select_head  # noqa: E402
from training.real import fusion  # noqa: E402
from training.real.folds import assign_folds, fold_of, source_key  # noqa: E402
from training.real.loop import FitConfig, StaleCheckpoint, fit  # noqa: E402
from training.real.sources import read_train_manifest  # noqa: E402


@pytest.fixture(scope="module")
def train_rows(shared_data: Path) -> list:
    root = shared_data.parent / "train"
    if not (root / "MANIFEST.csv").is_file():
        pytest.skip(f"no labelled training media at {root}")
    return read_train_manifest(root)


def test_manifest_rows_keep_ff_pairs_and_sentences_together(train_rows) -> None:
    assert {r.kind for r in train_rows} == {"video", "image", "audio"}
    assert {r.label for r in train_rows} == {0, 1}
    ff = [r for r in train_rows if r.group.startswith("ff:") and r.kind == "video"]
    fakes = {r.group for r in ff if r.label == 1}
    reals = {r.group for r in ff if r.label == 0}
    assert fakes and fakes & reals, "an FF++ fake must share its group with its original"
    assert all(r.generator == "" for r in train_rows if r.label == 0)


def test_folds_hold_out_whole_sources(train_rows) -> None:
    records = [{"kind": r.kind, "label": r.label, "source": r.source, "group": r.group,
                "collection": r.collection} for r in train_rows]
    folds = assign_folds(records)
    assert folds == assign_folds(list(reversed(records)))  # deterministic
    by_source: dict[str, set[int]] = {}
    for rec in records:
        by_source.setdefault(source_key(rec), set()).add(fold_of(rec, folds))
    assert all(len(f) == 1 for f in by_source.values())
    # FF++ figures (FaceSwapper, DiffFace) sit with FaceForensics++
    ff_folds = {fold_of(r, folds) for r in records if r["group"].startswith("ff:")}
    assert len(ff_folds) == 1
    assert fold_of({"collection": "dev"}, folds) == -1
    assert len(set(folds.values())) == 4


def test_pack_is_what_ingest_sends(shared_data: Path) -> None:
    from services.ingest.faces import FaceDetector
    from services.ingest.settings import IngestSettings
    from training.real.pack import NUM_FRAMES, ingest_file

    clip = shared_data / "talking" / "lipnet__GRID_bbaf2n.mpg"
    entry = asyncio.run(ingest_file(clip, FaceDetector(), IngestSettings()))
    assert entry["crops"].shape[1:] == (FACE_CROP_SIZE, FACE_CROP_SIZE, 3)
    assert entry["crops"].dtype == np.uint8 and len(entry["crops"]) >= NUM_FRAMES // 2
    assert set(entry["frame"].tolist()) <= set(range(NUM_FRAMES))
    # landmarks land inside the crop, eyes above the mouth
    marks = entry["landmarks"]
    assert (marks > 0).all() and (marks < FACE_CROP_SIZE).all()
    assert (marks[:, :2, 1].mean(1) < marks[:, 3:, 1].mean(1)).all()
    assert entry["pcm"].dtype == np.float32 and 2.5 * 16000 < entry["pcm"].size < 3.5 * 16000
    assert entry["dense_found"].any() and entry["mouth"].shape[1:] == (96, 96, 3)


def test_fit_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A run killed at step 3 and started again ends with the weights of an unbroken run."""
    class Killed(Exception):
        pass

    def batches(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(8, 3)).astype(np.float32)
        return x, (x[:, 0] > 0).astype(np.float32)

    def dies_at_3(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if step == 3:
            raise Killed
        return batches(step, rng)

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Linear(3, 1)

    cfg = FitConfig(steps=6, lr=0.1, warmup_steps=1, threads=1, checkpoint_seconds=0.0)
    straight = model()
    fit(straight, batches, cfg, tmp_path / "a")
    with pytest.raises(Killed):
        fit(model(), dies_at_3, cfg, tmp_path / "b")
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 3
    resumed = model()
    fit(resumed, batches, cfg, tmp_path / "b")
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert json.loads((tmp_path / "b" / "fit.json").read_text())["steps"] == 6


def _motion_sequences(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Embedding sequences of 2-16 frames; a fake's frames jump further from one to the next."""
    labels = np.arange(n) % 2
    seqs = [np.cumsum(rng.normal(0, 0.2 + 0.8 * y, (int(rng.integers(2, 17)), 8)), axis=0)
            + rng.normal(0, 1, 8) for y in labels]
    return [s.astype(np.float32) for s in seqs], labels


def test_fit_refuses_a_checkpoint_of_other_data_or_settings(tmp_path: Path) -> None:
    """A run folder resumes only the run it holds: the same data key and the settings that
    shape the model; where and how fast it runs may change."""
    from dataclasses import replace

    from training.real.loop import data_key_of

    def batches(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(8, 3)).astype(np.float32)
        return x, (x[:, 0] > 0).astype(np.float32)

    data = np.arange(6, dtype=np.float32)
    key = data_key_of(data, {"recipe": 1})
    assert key == data_key_of(data.copy(), {"recipe": 1})
    assert key != data_key_of(data + 1, {"recipe": 1})
    assert key != data_key_of(data, {"recipe": 2})
    assert key != data_key_of(data.astype(np.float64), {"recipe": 1})
    assert data_key_of([data, data]) != data_key_of([data])
    cfg = FitConfig(steps=4, lr=0.1, warmup_steps=1, threads=1)
    run = tmp_path / "run"
    fit(torch.nn.Linear(3, 1), batches, cfg, run, key)
    fit(torch.nn.Linear(3, 1), batches, replace(cfg, threads=2, checkpoint_seconds=5.0), run, key)
    with pytest.raises(StaleCheckpoint, match="other data"):
        fit(torch.nn.Linear(3, 1), batches, cfg, run, data_key_of(data + 1, {"recipe": 1}))
    with pytest.raises(StaleCheckpoint, match=r"other settings \(lr: 0.1 -> 0.2, steps: 4 -> 8\)"):
        fit(torch.nn.Linear(3, 1), batches, replace(cfg, lr=0.2, steps=8), run, key)


def test_temporal_batches_are_balanced_windows_of_one_length() -> None:
    from training.real.temporal import MIN_FRAMES, sequence_batches

    seqs, labels = _motion_sequences(np.random.default_rng(0), 40)
    draw = sequence_batches(seqs, labels, batch=16)
    lengths = set()
    for step in range(30):
        x, y = draw(step, np.random.default_rng([0, step]))
        assert x.shape[0] == 16 and x.shape[2] == 8 and x.dtype == np.float32
        assert y.sum() == 8
        assert MIN_FRAMES <= x.shape[1] <= 16
        lengths.add(x.shape[1])
        n = x.shape[1]
        for window, label in zip(x, y, strict=True):  # a contiguous window of its class
            assert any(np.array_equal(window, s[k:k + n]) for i, s in enumerate(seqs)
                       if labels[i] == label for k in range(len(s) - n + 1))
    assert len(lengths) > 1
    with pytest.raises(ValueError, match="real and fake"):
        sequence_batches(seqs, np.zeros(40, int))


def test_temporal_trains_on_the_shared_loop_and_resumes(tmp_path: Path) -> None:
    """The sequence model learns motion on the shared loop; a second call reuses the
    finished checkpoint instead of training again, and other sequences are refused there."""
    from sklearn.metrics import roc_auc_score

    from training.real.temporal import STEPS, train

    seqs, labels = _motion_sequences(np.random.default_rng(1), 60)
    model = train(seqs, labels, tmp_path / "fold0", seed=0)
    assert torch.load(tmp_path / "fold0" / "checkpoint.pt", weights_only=False)["step"] == STEPS
    test, truth = _motion_sequences(np.random.default_rng(2), 60)
    with torch.no_grad():
        scores = [float(model(torch.from_numpy(s[None]))) for s in test]
    assert roc_auc_score(truth, scores) > 0.9
    again = train(seqs, labels, tmp_path / "fold0", seed=0)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(StaleCheckpoint, match="other data"):
        train(test, truth, tmp_path / "fold0", seed=0)


def test_capture_conditions_keep_shape_and_code_every_sample() -> None:
    from training.real.visual import capture_conditions

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (FACE_CROP_SIZE, FACE_CROP_SIZE, 3), dtype=np.uint8)
             for _ in range(6)]
    kinds = ["image", "video"] * 3
    for chain in ({"h264": 1.0, "jpeg": 0.0}, {"h264": 0.0, "jpeg": 1.0},
                  {"h264": 0.5, "jpeg": 0.5}):
        out = capture_conditions(crops, kinds, rng, chain)
        assert len(out) == len(crops)
        for before, after in zip(crops, out, strict=True):
            assert after.shape == before.shape and after.dtype == np.uint8
            assert after.flags.c_contiguous and not np.array_equal(after, before)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b) ** 2)))


def test_h264_roundtrip_loses_more_at_higher_crf() -> None:
    from training.fakes.codec import h264_roundtrip

    yy, xx = np.mgrid[0:96, 0:128]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], -1).clip(0, 255).astype(np.uint8)
    frames = np.stack([np.roll(base, 3 * k, axis=1) for k in range(4)])
    frames[:, 40:60, 50:80] = 255 - frames[:, 40:60, 50:80]
    fine, coarse = h264_roundtrip(frames, 16), h264_roundtrip(frames, 44, "ultrafast",
                                                              intra_only=False)
    assert fine.shape == coarse.shape == frames.shape
    assert _psnr(fine, frames) > 30 and _psnr(fine, frames) > _psnr(coarse, frames) + 4 > 19
    with pytest.raises(ValueError, match="even"):
        h264_roundtrip(frames[:, :95], 23)


def test_column_logits_reads_only_probabilities() -> None:
    x = np.array([[0.5, 0.9, 16.0], [0.0, 1.0, 3.0]])
    z = column_logits(x, [0, 1])
    assert z.shape == (2, 2) and z[0, 0] == pytest.approx(0.0)
    assert z[0, 1] == pytest.approx(np.log(9.0)) and np.isfinite(z).all()


def _rows(n: int, seed: int = 0) -> list[dict]:
    """Rows of four sources whose visual score carries the label, audio-only rows beside."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(i % 2)
        src = f"s{i % 4}"
        p = float(np.clip(0.5 + (0.3 if label else -0.3) + rng.normal(0, 0.15), 0.01, 0.99))
        if i % 3 == 0:
            feats = {"audio_prob_fake": p}
            kind = "audio"
        else:
            feats = {"tiny_prob_mean": 0.5, "tiny_prob_max": 0.6, "tiny_prob_p90": 0.55,
                     "tiny_num_files": 4.0, "tiny_num_patches": 196.0, "visual_prob_mean": p,
                     "visual_prob_max": p, "visual_prob_p90": p, "visual_num_faces": 4.0}
            kind = "image"
        rows.append({"label": label, "source": src, "group": src, "kind": kind,
                     "collection": "train", "features": feats, "prob_fake": {}})
    return rows


def test_leave_one_source_out_never_fits_on_the_scored_source() -> None:
    rows = _rows(80)
    held = fusion.leave_one_source_out(rows)
    assert len(held) == len(rows)
    subsets = fusion.subsets_present(rows)
    first = [r for r in held if r["source"] == "s0"]
    heads = fusion.fit_heads([r for r in rows if r["source"] != "s0"], subsets)
    for r in first:
        x = fusion.matrix([r], fusion.head_columns(r["head"].split("+")))
        assert r["p_raw"] == pytest.approx(heads[r["head"]].predict_proba(x)[0, 1])
    temps = fusion.temperatures(held)
    fusion.calibrate_rows(held, temps)
    threshold = fusion.real_flag_threshold(held)
    flagged = np.mean([r["p"] >= threshold for r in held if r["label"] == 0])
    assert flagged <= 0.1


def test_bundle_with_one_branch_heads_loads_in_the_service() -> None:
    rows = _rows(80)
    held = fusion.leave_one_source_out(rows)
    temps = fusion.temperatures(held)
    data = fusion.bundle(rows, temps, 0.6, {})
    bundle = bundle_from_dict(data)
    assert "audio" in bundle.heads and "visual" in bundle.heads
    assert not any("tiny_gate" in key for key in bundle.heads if key != FULL_HEAD_KEY)
    assert select_head(bundle.heads, ["audio"]) == "audio"
    assert select_head(bundle.heads, ["audio", "temporal"]) == "audio"
    p_fake = bundle.heads["audio"].probability({"audio_prob_fake": 0.95})
    p_real = bundle.heads["audio"].probability({"audio_prob_fake": 0.05})
    assert p_fake > 0.5 > p_real
    full = bundle.full.probability({c: 0.5 for c in FEATURE_COLS})
    assert 0.0 < full < 1.0
    data["heads"]["audio"]["reads"] = ["visual"]  # a head cannot read outside its branches
    with pytest.raises(ModelIntegrityError, match="outside its branches"):
        bundle_from_dict(data)


def test_heads_stay_inside_one_modality_and_clips_take_the_face_head() -> None:
    rows = _rows(80)
    for i, r in enumerate(rows):  # every fourth face row is a clip with audio, temporal, sync
        if r["kind"] == "image" and i % 4 == 1:
            r["features"] |= {"audio_prob_fake": 0.5, "temporal_prob_fake": 0.5,
                              "sync_prob": 0.5}
    subsets = fusion.subsets_present(rows)
    assert set(subsets) == {("visual",), ("audio",)}
    heads = fusion.fit_heads(rows, subsets)
    bundle = bundle_from_dict(fusion.bundle(rows, fusion.temperatures(
        fusion.leave_one_source_out(rows)), 0.6, {}, heads))
    face = bundle.heads["visual"]
    assert select_head(bundle.heads, ["tiny_gate", "visual", "audio"]) == "visual"
    # a clip with every branch: the full head is the face head's stand-in (reads the same),
    # and says so, so a result names only visual as the branch its score came from
    chosen = bundle.heads[select_head(bundle.heads, list(fusion.LR_BRANCHES))]
    assert chosen.key == FULL_HEAD_KEY and chosen.reads == face.reads == ("visual",)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = {c: float(rng.uniform(0.05, 0.95)) for c in FEATURE_COLS}
        assert chosen.probability(x) == pytest.approx(face.probability(x), abs=1e-9)
        # the face head reads only visual's mean probability
        assert face.probability(x) == pytest.approx(face.probability(
            x | {"visual_prob_max": 0.99, "tiny_prob_mean": 0.99, "tiny_prob_p90": 0.01,
                 "audio_prob_fake": 0.9}))


@pytest.mark.slow
@pytest.mark.parametrize("branch,recipe_file,mean_feature,count_feature", [
    ("visual", "visual-2.1.0.json", "visual_prob_mean", "visual_num_faces"),
    ("tiny_gate", "tiny_gate-2.0.0.json", "tiny_prob_mean", "tiny_num_files"),
])
def test_face_recipe_smoke_run_exports_a_servable_model(
        tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch, train_rows,
        branch: str, recipe_file: str, mean_feature: str, count_feature: str) -> None:
    """pack -> pools -> two training steps -> ONNX export -> held-out features by the
    branch service's own code: the shipped recipe end to end, seconds long."""
    import importlib

    from training.real import features, pack, visual

    if branch == "visual":
        pytest.importorskip("efficientnet_lite_pytorch")
    trainer = importlib.import_module(f"training.real.{branch}")
    export = {"visual": features.export_visual,
              "tiny_gate": getattr(trainer, "export_tiny_gate", None)}[branch]
    monkeypatch.setattr(pack, "pack_dir", lambda: tmp_path / "pack")
    picks = [r for r in train_rows if r.kind == "image" and r.label == 1][:2]
    picks += [r for r in train_rows if r.kind == "image" and r.label == 0][:2]
    records = pack.build_pack(picks, tmp_path / "pack", workers=1)
    records = [r for r in records if r.get("faces", 0) > 0]
    assert {r["label"] for r in records} == {0, 1}
    recipe = visual.load_recipe(Path(__file__).resolve().parents[1] / "training" / "recipes"
                                / recipe_file) | {"batch_size": 4, "threads": 1}
    model = trainer.train_one(recipe, records, tmp_path / "run", steps=2, device="cpu")
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    repo = export(model, recipe, tmp_path / "repo", {"metrics": {}})
    out = tmp_path / "oof.jsonl"
    features.write_oof(branch, repo, records, 0, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(records)
    for row in rows:
        f = row[branch]["features"]
        assert 0.0 <= f[mean_feature] <= 1.0 and f[count_feature] >= 1


def test_score_reuses_only_the_unchanged_branches(tmp_path: Path) -> None:
    from training.real.score import reused_branches

    row = {"entry": "e1", "features": {"visual_prob_mean": 0.9, "visual_num_faces": 3.0,
                                       "tiny_prob_max": 0.2, "audio_prob_fake": 0.7,
                                       "sync_prob": 0.4, "mri_prob_mean": 0.5,
                                       "temporal_prob_fake": 0.6},
           "prob_fake": {"visual": 0.9, "tiny_gate": 0.2, "audio": 0.7, "sync": 0.6,
                         "mri": 0.5, "temporal": 0.6}}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    got = reused_branches(path)["e1"]
    assert got["features"] == {"tiny_prob_max": 0.2, "audio_prob_fake": 0.7, "sync_prob": 0.4,
                               "mri_prob_mean": 0.5}
    assert set(got["prob_fake"]) == {"tiny_gate", "audio", "sync", "mri"}


def test_score_keeps_visual_and_temporal_only_when_asked(tmp_path: Path) -> None:
    """--keep-visual copies visual's and temporal's rows too, and needs a file to copy from."""
    from training.real.score import KEPT_WITH_VISUAL, REUSABLE, main, reused_branches

    row = {"entry": "e1", "features": {"visual_prob_mean": 0.9, "visual_num_faces": 3.0,
                                       "temporal_prob_fake": 0.6, "audio_prob_fake": 0.7},
           "prob_fake": {"visual": 0.9, "temporal": 0.6, "audio": 0.7}}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    kept = reused_branches(path, [*REUSABLE, *KEPT_WITH_VISUAL])["e1"]
    assert kept == {"features": row["features"], "prob_fake": row["prob_fake"]}
    assert set(reused_branches(path)["e1"]["prob_fake"]) == {"audio"}
    with pytest.raises(SystemExit):
        main(["--visual", "2.3.0", "--keep-visual"])


def test_score_reuses_a_release_s_held_out_rows_by_path(tmp_path: Path) -> None:
    """models/fusion/<v>/heldout_rows.jsonl names files by path; the packed entry is derived
    from it as the packer names it."""
    from training.real.pack import entry_name
    from training.real.score import reused_branches
    from training.real.sources import RealRow

    real = RealRow(Path("/media/train/audio/demo/a.flac"), "audio", 1, "demo", "demo|a",
                   "tts-x", "train")
    row = {"path": str(real.path), "features": {"audio_prob_fake": 0.7, "visual_prob_mean": 0.9},
           "prob_fake": {"audio": 0.7, "visual": 0.9}}
    path = tmp_path / "heldout_rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    got = reused_branches(path)
    assert list(got) == [entry_name(real)]
    assert got[entry_name(real)]["prob_fake"] == {"audio": 0.7}


def test_tiny_gate_crop_logit_is_the_mean_of_the_served_patch_logits() -> None:
    """PatchMean cuts a crop exactly as the service does (tiny_patches), so the crop logit
    it trains on is the mean of the patch logits the exported model gives in service."""
    import torch

    from dfmesh.preprocess.patches import tiny_patches
    from training.models.tiny_ladeda import TinyLaDeDa
    from training.real.tiny_gate import PatchMean, encode

    torch.manual_seed(0)
    tiny = TinyLaDeDa().eval()
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (FACE_CROP_SIZE, FACE_CROP_SIZE, 3), dtype=np.uint8)
             for _ in range(2)]
    with torch.no_grad():
        got = PatchMean(tiny)(torch.from_numpy(encode(crops))).numpy().ravel()
        served = [tiny(torch.from_numpy(tiny_patches(c))).numpy().mean() for c in crops]
    np.testing.assert_allclose(got, served, rtol=1e-5, atol=1e-5)


def test_tiny_gate_standardize_puts_the_median_real_at_minus_one_and_fake_at_plus_one() -> None:
    import torch

    from training.models.tiny_ladeda import TinyLaDeDa
    from training.real.tiny_gate import PatchMean, standardize

    torch.manual_seed(0)
    model = PatchMean(TinyLaDeDa()).eval()

    def sampler(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        # fakes brighter than reals: this seed's untrained model puts them above
        y = np.array([0, 0, 1, 1], np.float32)
        x = rng.normal(size=(4, 3, 64, 64)).astype(np.float32) + 2.0 * y[:, None, None, None]
        return x, y

    before = standardize(model, sampler, batches=6)
    assert before["median_fake"] > before["median_real"] and before["scale"] != 1.0
    rng = np.random.default_rng(12345)
    with torch.no_grad():
        draws = [sampler(s, rng) for s in range(6)]
        z = np.concatenate([model(torch.from_numpy(x)).numpy().ravel() for x, _ in draws])
    y = np.concatenate([d[1] for d in draws])
    assert np.median(z[y == 0]) == pytest.approx(-1.0, abs=1e-3)
    assert np.median(z[y == 1]) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_sync_recipe_smoke_run_exports_a_servable_model(tmp_path: Path, shared_data: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real talking clips through ingest's pipeline (dense mouth crops, 16 kHz audio) ->
    aligned/shifted/swapped pairs -> two steps of the shared loop with (mouth, audio) inputs
    -> ONNX export -> held-out sync features by the sync service's own code."""
    from training.real import features, pack, sync, visual
    from training.real.sources import all_rows

    monkeypatch.setattr(pack, "pack_dir", lambda: tmp_path / "pack")
    picks = [r for r in all_rows(shared_data.parent)
             if r.kind == "video" and r.label == 0 and "LipNet" in r.source][:2]
    if len(picks) < 2:
        pytest.skip("no GRID talking clips in ../shared/data")
    records = pack.build_pack(picks, tmp_path / "pack", workers=1)
    tracks = sync.real_tracks(records)
    assert len(tracks) == 2 and all(t.pcm.size and t.found.any() for t in tracks)
    recipe = visual.load_recipe(Path(__file__).resolve().parents[1] / "training" / "recipes"
                                / "sync-2.0.0.json") | {"batch_size": 8, "pair_pools": 1}
    (mouth, audio), y = sync.PairSampler(tracks, recipe)(0, np.random.default_rng(0))
    assert mouth.shape[0] == audio.shape[0] == 8 and y.sum() == 4  # class-balanced
    model = sync.train_one(recipe, records, tmp_path / "run", steps=2, device="cpu")
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    repo = sync.export_sync(model, recipe, tmp_path / "repo", {"metrics": {}})
    out = tmp_path / "oof.jsonl"
    features.write_oof("sync", repo, records, 0, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= row["sync"]["features"]["sync_prob"] <= 1.0
        assert row["sync"]["prob_fake"] == pytest.approx(1.0 - row["sync"]["features"]["sync_prob"])


def test_loop_takes_adam_at_a_constant_rate_and_refuses_unknown_settings(tmp_path: Path) -> None:
    from training.real.loop import lr_at

    cfg = FitConfig(steps=50, lr=1e-3, warmup_steps=5, optimizer="adam", schedule="constant")
    assert [lr_at(s, cfg) for s in (0, 4, 5, 49)] == pytest.approx([2e-4, 1e-3, 1e-3, 1e-3])
    assert lr_at(49, FitConfig(steps=50, lr=1e-3, warmup_steps=5)) == pytest.approx(5e-5, rel=0.05)

    def batches(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return rng.normal(size=(4, 3)).astype(np.float32), np.array([0, 1, 0, 1], np.float32)

    for bad in (FitConfig(steps=2, optimizer="sgd"), FitConfig(steps=2, schedule="step")):
        with pytest.raises(ValueError, match="expected one of"):
            fit(torch.nn.Linear(3, 1), batches, bad, tmp_path / "bad")


def test_loop_trains_on_a_loss_it_is_given(tmp_path: Path) -> None:
    """A regression (a generator's reconstruction, say) trains on the shared loop through
    `loss`: the fitted map recovers the targets' linear rule."""
    rule = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)

    def batches(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(16, 2)).astype(np.float32)
        return x, x @ rule.T

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2, bias=False)
    summary = fit(model, batches, FitConfig(steps=300, lr=0.05, warmup_steps=1, threads=1,
                                            weight_decay=0.0, schedule="constant"),
                  tmp_path / "mse", loss=lambda out, y: torch.nn.functional.mse_loss(out, y))
    assert summary["final_loss_mean20"] < 1e-3
    assert np.allclose(model.weight.detach().numpy(), rule, atol=0.02)


@pytest.mark.slow
def test_mri_recipe_smoke_run_exports_a_servable_model(tmp_path: Path, smoke_cache: Path) -> None:
    """The prepared face cache -> the generator stage (generator and discriminator as one
    model on the shared loop) -> the classifier stage on its maps -> the 1.x export -> a
    real face crop through the mri service's own code."""
    from dfmesh.runtime.branch_inputs import BranchInputs, FrameInput
    from training.data.faces import load_face_sources
    from training.real import features, mri, visual

    recipe = visual.load_recipe(Path(__file__).resolve().parents[1] / "training" / "recipes"
                                / "mri-1.1.0.json")
    recipe |= {"batch_size": 2, "train_size": 64, "classifier_samples": 4,
               "classifier_batch_size": 4, "val_samples": 2, "test_samples": 4}
    metrics = mri.train(recipe, tmp_path / "run", smoke_cache, tmp_path / "repo",
                        steps_scale=0.01, dev=False)
    assert 0.0 <= metrics["test_pseudo_fakes"]["map_l1"] <= 1.0
    for stage in ("generator", "classifier"):
        assert json.loads((tmp_path / "run" / stage / "fit.json").read_text())["steps"] == 3
    server = features.load_server("mri", tmp_path / "repo", "latest")
    assert server.manifest.version == "1.1.0"
    assert server.manifest.extra["recipe"] == "training/recipes/mri-1.1.0.json"
    crop = load_face_sources(smoke_cache, "test")[0].crops[0]
    got = features.served_features(server, BranchInputs(frames=[FrameInput(0, 0.0, [crop])]))
    assert got is not None and 0.0 <= got["features"]["mri_prob_mean"] <= 1.0
