"""Fine-tune AASIST on real labelled speech deepfakes, cross-fitted over source-disjoint folds.

    python -m training.real.audio --cache            # front-end features of every window
    python -m training.real.audio --folds            # 4 fold models -> OOF scores + metrics
    python -m training.real.audio --final --export 2.0.0

Data: the pack's audio files (../shared/train audio, fake and real; ../shared/data speech,
real) and the audio track of REAL videos (varied channels; fake videos' audio has no label).

Recipe. The released AASIST-L (MIT, ASVspoof 2019 LA) is the start. Its sinc front end and
first `frozen_blocks` residual blocks stay frozen (eval-mode BN): on two shared CPU cores the
full network costs about a second per 4 s window, so the frozen part runs once per window
and its output is cached (`--cache`); the later blocks and the graph-attention back end are
fine-tuned on the cache. Windows per file, each seeded from the file's path:

    clean    the windows the service would score (dfmesh.preprocess.waveform, at most
             EVAL_WINDOWS): the OOF scores, and training samples of the identity channel
    aug      AUG_WINDOWS random windows through a random channel chain
    pseudo   (reals only) a random window made fake by a speech recipe
             (training.fakes.speech: vocoder resyntheses, WORLD, espeak-ng, flite), then
             a random channel chain; it belongs to its real file's fold

The chain (identity, mp3, opus, aac at several bitrates, 8 kHz telephone, band-limit, one or
two stages, then gain) is drawn from the same distribution for both classes, so a codec
tells nothing about the label. Batches are class-balanced; of the fake half ~60% are real
fakes and ~40% pseudo-spoofs. Cross-entropy, Adam (lr 1e-4, weight decay 1e-4), fixed seeds,
on the shared training loop (training.real.loop: checkpoints and resume in
runs/real/audio/fold<k> and final, a progress bar, --device).

Evaluation: fold f's files are scored (mean over clean windows of P(fake)) by the model
trained on the other folds' files: runs/real/audio/oof.jsonl and metrics.json (pooled AUC,
log-loss, ECE, per-source AUC, leave-one-generator-out AUC, the pretrained model's figures
on the same files). The decision threshold flags 5% of the OOF reals.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dfmesh.preprocess import waveform
from training.audio import spoof
from training.evaluation.metrics import binary_report, expected_calibration_error
from training.loaders.media import decode_bytes, encode_pcm
from training.models.aasist import AASIST, BONA_FIDE, FakeLogit, FrontEnd, load_pretrained
from training.real.folds import NUM_FOLDS, assign_folds, fold_of, source_key
from training.real.loop import CHECKPOINT, BatchFn, FitConfig, data_key_of, fit, load_weights
from training.real.pack import load_entry, read_index
from training.runtime import RUNS_DIR, seed_everything

log = logging.getLogger(__name__)

VARIANT = "AASIST-L"
FROZEN_BLOCKS = 4
EVAL_WINDOWS = waveform.MAX_WINDOWS
AUG_WINDOWS = 1
PSEUDO_SHARE = 0.4
"""Share of pseudo-spoofs in a batch's fake half."""
OUT_DIR = RUNS_DIR / "real" / "audio"
SR = waveform.SAMPLE_RATE


# --- channel chains -------------------------------------------------------------------------

def _codec(pcm: np.ndarray, codec: str, kbps: int) -> np.ndarray:
    if codec == "aac":
        data = encode_pcm(pcm, SR, ["-c:a", "aac", "-b:a", f"{kbps}k"], "adts")
        return spoof._fit_length(decode_bytes(data, SR), pcm.size)
    return spoof.codec_round_trip(pcm, codec, kbps)


def _stage(pcm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    kind = str(rng.choice(["mp3", "opus", "aac", "telephone", "band_limit"],
                          p=[0.25, 0.25, 0.2, 0.15, 0.15]))
    if kind == "mp3":
        rate = int(rng.choice([24, 32, 48, 64, 96, 128]))
        return _codec(pcm, "mp3", rate), f"mp3_{rate}k"
    if kind == "opus":
        rate = int(rng.choice([12, 16, 24, 32, 48]))
        return _codec(pcm, "opus", rate), f"opus_{rate}k"
    if kind == "aac":
        rate = int(rng.choice([32, 48, 64, 96]))
        return _codec(pcm, "aac", rate), f"aac_{rate}k"
    if kind == "telephone":
        return spoof.telephone(pcm), "telephone_8k"
    cutoff = float(rng.uniform(3400, 7000))
    return spoof.band_limit(pcm, cutoff), f"lowpass_{int(cutoff)}"


def channel_chain(pcm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Identity (25%) or one or two codec/band stages, then a gain of -12..+3 dB."""
    out, names = pcm, []
    if rng.random() >= 0.25:
        for _ in range(1 + int(rng.random() < 0.3)):
            out, name = _stage(out, rng)
            names.append(name)
    gain_db = float(rng.uniform(-12, 3))
    out = np.clip(out * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)
    return out, "+".join(names or ["identity"]) + f"|{gain_db:+.0f}dB"


# --- the data -------------------------------------------------------------------------------

def audio_records(index: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audio files (both labels) and real videos with an audio track; dev and refusals out."""
    out = []
    for r in index:
        if "error" in r or r.get("collection") == "dev" or r.get("audio_seconds", 0) <= 0.5:
            continue
        if r["kind"] == "audio" or (r["kind"] == "video" and r["label"] == 0):
            out.append(r)
    return out


def _file_seed(record: dict[str, Any], seed: int) -> int:
    return (int(hashlib.sha1(record["path"].encode()).hexdigest()[:8], 16) + seed) % 2**31


def cache_dir(variant: str, frozen_blocks: int) -> Path:
    return RUNS_DIR / "cache" / "real" / f"audio_{variant}_b{frozen_blocks}"


@dataclass
class WindowSet:
    """Every cached window: front-end features and what each one is."""

    feats: np.ndarray          # float16 [W, C, F, T]
    file: np.ndarray           # int [W] index into `records`
    label: np.ndarray          # int [W] 1 = fake
    role: np.ndarray           # str [W] clean | aug | pseudo
    recipe: np.ndarray         # str [W] pseudo-spoof recipe ("" otherwise)
    chain: np.ndarray          # str [W]
    records: list[dict[str, Any]]


def file_windows(record: dict[str, Any], pcm: np.ndarray, seed: int,
                 recipes: Sequence[str]) -> list[tuple[np.ndarray, str, int, str, str]]:
    """(window, role, label, recipe, chain) for one file, reproducible from its path."""
    from training.fakes.speech import make_spoof

    rng = np.random.default_rng(_file_seed(record, seed))
    label = int(record["label"])
    out = [(w, "clean", label, "", "identity")
           for w in waveform.waveform_windows(pcm, EVAL_WINDOWS)]
    for _ in range(AUG_WINDOWS):
        w, chain = channel_chain(waveform.random_window(pcm, rng), rng)
        out.append((w, "aug", label, "", chain))
    if label == 0 and recipes:
        recipe = str(rng.choice(list(recipes)))
        fake = make_spoof(recipe, waveform.random_window(pcm, rng), int(rng.integers(2**31)))
        w, chain = channel_chain(fake, rng)
        out.append((w, "pseudo", 1, recipe, chain))
    return out


def front_end_session(model: AASIST, frozen_blocks: int, out_dir: Path) -> Any:
    """The frozen front end on ONNX Runtime (one thread): about 3x faster than torch here."""
    import onnxruntime as ort

    from training.export import TensorSpec, export_onnx

    path = export_onnx(FrontEnd(model, frozen_blocks).eval(),
                       (torch.zeros(1, waveform.WINDOW_SAMPLES),), out_dir / "front_end.onnx",
                       [TensorSpec("waveform", ["N", waveform.WINDOW_SAMPLES])],
                       [TensorSpec("features", ["N", "C", "F", "T"])])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build_cache(records: list[dict[str, Any]], model: AASIST, frozen_blocks: int,
                out_dir: Path, seed: int = 0) -> None:
    """Front-end features of every file's windows, one npz per file (resumable)."""
    from training.fakes.speech import available_recipes

    out_dir.mkdir(parents=True, exist_ok=True)
    session = front_end_session(model, frozen_blocks, out_dir)
    recipes = available_recipes()
    log.info("pseudo-spoof recipes: %s", recipes)
    todo = [r for r in records if not (out_dir / r["entry"]).is_file()]
    for record in tqdm(todo, desc="audio cache", unit="file"):
        pcm = load_entry(record)["pcm"]
        rows = file_windows(record, pcm, seed, recipes)
        feats = np.concatenate([session.run(None, {"waveform": r[0][None]})[0]
                                for r in rows]).astype(np.float16)
        tmp = out_dir / (record["entry"] + ".tmp.npz")
        np.savez(tmp, feats=feats, role=np.array([r[1] for r in rows]),
                 label=np.array([r[2] for r in rows]), recipe=np.array([r[3] for r in rows]),
                 chain=np.array([r[4] for r in rows]))
        tmp.rename(out_dir / record["entry"])


def load_cache(records: list[dict[str, Any]], out_dir: Path) -> WindowSet:
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    kept = []
    for record in records:
        path = out_dir / record["entry"]
        if not path.is_file():
            continue
        with np.load(path) as z:
            for key in ("feats", "role", "label", "recipe", "chain"):
                parts[key].append(z[key])
            parts["file"].append(np.full(len(z["label"]), len(kept)))
        kept.append(record)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return WindowSet(cat["feats"], cat["file"], cat["label"], cat["role"], cat["recipe"],
                     cat["chain"], kept)


# --- training -------------------------------------------------------------------------------

class BackEndFakeLogit(torch.nn.Module):
    """AASIST as the shared loop trains it, over cached front-end features: only what follows
    the frozen front end is trainable, and the frozen part stays in eval mode (its batch norm
    statistics as released) when the loop calls train(). The output is the log-odds of fake
    (spoof minus bona fide logit), so the loop's binary cross-entropy on it is the two-class
    cross-entropy over AASIST's logits."""

    def __init__(self, model: AASIST, frozen_blocks: int) -> None:
        super().__init__()
        self.model, self.frozen_blocks = model, frozen_blocks
        frozen = [model.conv_time, model.first_bn, *model.encoder[:frozen_blocks]]
        for module in frozen:
            module.requires_grad_(False)
        self._frozen = frozen

    def train(self, mode: bool = True) -> BackEndFakeLogit:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        _, logits = self.model.back_end(feats, self.frozen_blocks)
        return (logits[:, 1 - BONA_FIDE] - logits[:, BONA_FIDE]).unsqueeze(1)


def sample_batch(pools: dict[str, np.ndarray], batch: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """Half reals; of the fake half PSEUDO_SHARE pseudo-spoofs, the rest real fakes."""
    n_real = batch // 2
    n_pseudo = int(round((batch - n_real) * PSEUDO_SHARE)) if len(pools["pseudo"]) else 0
    n_fake = batch - n_real - n_pseudo
    return np.concatenate([rng.choice(pools["real"], n_real),
                           rng.choice(pools["fake"], n_fake),
                           rng.choice(pools["pseudo"], n_pseudo) if n_pseudo else
                           np.zeros(0, int)]).astype(int)


def window_batches(ws: WindowSet, train_files: np.ndarray, batch: int) -> BatchFn:
    """The shared loop's batches of cached windows of `train_files` (file indices)."""
    in_train = np.isin(ws.file, train_files)
    pools = {"real": np.flatnonzero(in_train & (ws.label == 0)),
             "fake": np.flatnonzero(in_train & (ws.label == 1) & (ws.role != "pseudo")),
             "pseudo": np.flatnonzero(in_train & (ws.role == "pseudo"))}

    def draw(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = sample_batch(pools, batch, rng)
        return ws.feats[idx].astype(np.float32), ws.label[idx].astype(np.float32)

    return draw


def train_model(ws: WindowSet, train_files: np.ndarray, steps: int, batch: int,
                frozen_blocks: int, run_dir: Path, seed: int, lr: float = 1e-4,
                device: str = "cpu") -> AASIST:
    """Fine-tune the pretrained back end on the windows of `train_files` (file indices) on the
    shared loop (training.real.loop): Adam with weight decay 1e-4 as an L2 term, a constant
    rate, no label smoothing; checkpoints and resume in `run_dir`."""
    net = BackEndFakeLogit(load_pretrained(VARIANT), frozen_blocks)
    cfg = FitConfig(steps=steps, lr=lr, weight_decay=1e-4, warmup_steps=0, seed=seed,
                    device=device, threads=2, label_smoothing=0.0, optimizer="adam",
                    schedule="constant")
    key = data_key_of(ws.feats, ws.label, ws.role, ws.chain, ws.records, train_files, batch,
                      frozen_blocks, VARIANT)
    fit(net, window_batches(ws, train_files, batch), cfg, run_dir, key)
    return net.model.eval()


def load_trained(run_dir: Path, frozen_blocks: int) -> AASIST:
    """A fold's or the final model from its shared-loop checkpoint."""
    net = BackEndFakeLogit(load_pretrained(VARIANT), frozen_blocks)
    return load_weights(net, run_dir).model.eval()


def window_fake_logits(model: AASIST, feats: np.ndarray, frozen_blocks: int,
                       chunk: int = 64) -> np.ndarray:
    """log-odds of fake for cached windows."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(feats), chunk):
            _, logits = model.back_end(torch.from_numpy(feats[i:i + chunk].astype(np.float32)),
                                       frozen_blocks)
            out.append((logits[:, 1 - BONA_FIDE] - logits[:, BONA_FIDE]).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def file_probs(model: AASIST, ws: WindowSet, files: np.ndarray, frozen_blocks: int
               ) -> dict[int, float]:
    """Mean over each file's clean windows of P(fake), as the service scores a clip."""
    mask = np.isin(ws.file, files) & (ws.role == "clean")
    idx = np.flatnonzero(mask)
    probs = 1.0 / (1.0 + np.exp(-window_fake_logits(model, ws.feats[idx], frozen_blocks)))
    sums: dict[int, list[float]] = defaultdict(list)
    for i, p in zip(ws.file[idx], probs, strict=True):
        sums[int(i)].append(float(p))
    return {f: float(np.mean(v)) for f, v in sums.items()}


# --- metrics --------------------------------------------------------------------------------

def _auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, probs)) if len(set(labels.tolist())) == 2 else None


def oof_metrics(rows: list[dict[str, Any]], key: str = "prob_fake") -> dict[str, Any]:
    """Pooled report, threshold flagging 5% of reals, per-source and per-generator AUC."""
    y = np.array([r["label"] for r in rows])
    p = np.array([r[key] for r in rows])
    threshold = float(np.quantile(p[y == 0], 0.95))
    pooled = binary_report(y, p, threshold=threshold)
    pooled["confusion_at_0.5"] = binary_report(y, p)["confusion"]
    pooled["fpr_at_threshold"] = float((p[y == 0] >= threshold).mean())
    pooled["tpr_at_threshold"] = float((p[y == 1] >= threshold).mean())
    by_source: dict[str, Any] = {}
    for source in sorted({r["source"] for r in rows}):
        m = np.array([r["source"] == source for r in rows])
        by_source[source] = {"n": int(m.sum()), "n_fake": int(y[m].sum()),
                             "auc": _auc(y[m], p[m]),
                             "mean_prob_fake": float(p[m].mean())}
    by_generator: dict[str, Any] = {}
    for gen in sorted({r["generator"] for r in rows if r["label"] == 1}):
        m = np.array([r["label"] == 0 or r["generator"] == gen for r in rows])
        by_generator[gen] = {"n_fake": int(y[m].sum()), "auc": _auc(y[m], p[m])}
    by_fold = {}
    for f in sorted({r["fold"] for r in rows}):
        m = np.array([r["fold"] == f for r in rows])
        by_fold[str(f)] = {"n": int(m.sum()), "n_fake": int(y[m].sum()), "auc": _auc(y[m], p[m])}
    return {"pooled": pooled, "threshold_flags_5pct_reals": threshold,
            "ece": expected_calibration_error(y, p), "per_source": by_source,
            "leave_one_generator_out": by_generator, "per_fold": by_fold}


def oof_row(record: dict[str, Any], fold: int, prob: float) -> dict[str, Any]:
    return {"path": record["path"], "source": source_key(record),
            "generator": record.get("generator", ""), "label": int(record["label"]),
            "kind": record["kind"], "fold": fold, "prob_fake": prob}


# --- export ---------------------------------------------------------------------------------

STARTING_WEIGHTS = {
    "model": "AASIST-L (Jung et al., ICASSP 2022), clovaai/aasist release",
    "license": "MIT (Copyright (c) 2021-present NAVER Corp.; NOTICE in shared/weights/aasist)",
    "pretrained_on": "ASVspoof 2019 LA train (bona fide and spoofed speech)",
}


def export_audio(model: AASIST, version: str, oof: dict[str, Any], recipe: dict[str, Any],
                 models_dir: Path | None = None) -> Path:
    """models/audio/<version>/{model.onnx, manifest.json}: waveform [N, 64600] -> logit [N, 1]
    (log-odds of fake), float32 weights, checked against torch at batch 1 and 3."""
    from training.export import ExportSpec, TensorSpec, export_branch, max_abs_difference
    from training.runtime import MODELS_DIR

    head = FakeLogit(model.eval()).eval()
    tuned = oof.get("fine_tuned", {})
    spec = ExportSpec(
        name=f"audio-{VARIANT.lower()}", branch="audio", version=version,
        inputs=[TensorSpec("waveform", ["N", waveform.WINDOW_SAMPLES])],
        outputs=[TensorSpec("logit", ["N", 1])],
        preprocessing={**waveform.PREPROCESSING, "max_windows_served": waveform.MAX_WINDOWS},
        training_data={
            "files": oof.get("counts", {}),
            "fake": "../shared/train audio fakes: zero-shot TTS and vocoder resyntheses from "
                    "public demo pages (research / non-commercial use only: the set's terms)",
            "real": "../shared/train audio reals (varied channels and codecs), "
                    "../shared/data/speech, and the audio track of real videos",
            "pseudo_spoofs": "reals resynthesized or spoken anew by training.fakes.speech "
                             "(Griffin-Lim, LPC, phase vocoder, WORLD, espeak-ng, flite)",
            "augmentation": "every window (both classes, same distribution): identity or one "
                            "or two of mp3 24-128k / opus 12-48k / aac 32-96k / 8 kHz "
                            "telephone / low-pass 3.4-7 kHz, then gain -12..+3 dB",
            "licence_note": "trained on research material: research / non-commercial use only",
        },
        metrics={"split": oof.get("what", ""), "command": oof.get("command", ""),
                 "oof": tuned, "pretrained_as_is_oof": oof.get("pretrained_as_is", {})},
        fp16_weights=False,
        extra={"model": f"{VARIANT}, {recipe['frozen_blocks']} front blocks frozen, the rest "
                        "fine-tuned", "parameters": sum(p.numel() for p in model.parameters()),
               "starting_weights": STARTING_WEIGHTS,
               "decision_threshold": tuned.get("threshold_flags_5pct_reals"),
               "decision_threshold_note": "P(fake) above which a clip is flagged: flags 5% "
                                          "of the out-of-fold reals",
               "recipe": recipe})
    example = (torch.from_numpy(np.random.default_rng(0).uniform(
        -0.5, 0.5, (3, waveform.WINDOW_SAMPLES)).astype(np.float32)),)
    version_dir = export_branch(head, example, spec, models_dir or MODELS_DIR)
    for batch in (example, (example[0][:1],)):
        diff = max_abs_difference(head, version_dir / "model.onnx", batch, ["waveform"])[0]
        if diff > 1e-4:
            raise RuntimeError(f"ONNX differs from torch by {diff:.2e} at batch {len(batch[0])}")
    return version_dir


def export_folds(version: str, recipe: dict[str, Any]) -> list[Path]:
    """Every fold checkpoint as a model repository of its own (same format as models/)."""
    metrics = json.loads((OUT_DIR / "metrics.json").read_text())
    done = []
    for f in range(NUM_FOLDS):
        run_dir = OUT_DIR / f"fold{f}"
        if not (run_dir / CHECKPOINT).is_file():
            continue
        model = load_trained(run_dir, int(recipe["frozen_blocks"]))
        fold_metrics = {"what": f"fold {f} model: trained without fold {f}'s sources; "
                                "metrics are its own held-out fold's",
                        "command": "python -m training.real.audio --folds",
                        "fine_tuned": {"per_fold": metrics["fine_tuned"]["per_fold"].get(
                            str(f), {}), "threshold_flags_5pct_reals":
                            metrics["fine_tuned"]["threshold_flags_5pct_reals"]},
                        "counts": metrics.get("counts", {})}
        repo = OUT_DIR / version / f"fold{f}" / "repo"
        export_audio(model, version, fold_metrics, recipe, models_dir=repo)
        done.append(repo)
    return done


# --- commands -------------------------------------------------------------------------------

def run_folds(ws: WindowSet, folds: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    file_fold = np.array([fold_of(r, folds) for r in ws.records])
    pretrained = load_pretrained(VARIANT)
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for f in range(NUM_FOLDS):
        test = np.flatnonzero(file_fold == f)
        train = np.flatnonzero((file_fold != f) & (file_fold >= 0))
        if not len(test):
            continue
        model = train_model(ws, train, args.steps, args.batch, args.frozen_blocks,
                            OUT_DIR / f"fold{f}", args.seed + f, args.lr,
                            args.device)
        tuned = file_probs(model.cpu(), ws, test, args.frozen_blocks)
        base = file_probs(pretrained, ws, test, args.frozen_blocks)
        for i in test:
            row = oof_row(ws.records[i], f, tuned[int(i)])
            row["prob_fake_pretrained"] = base[int(i)]
            rows.append(row)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with open(OUT_DIR / "oof.jsonl", "w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    metrics = {
        "what": "out-of-fold: each file scored by a model fine-tuned without its source "
                f"({NUM_FOLDS} source-disjoint folds, training.real.folds); file score = mean "
                f"P(fake) over at most {EVAL_WINDOWS} clean windows",
        "command": "python -m training.real.audio --folds",
        "fine_tuned": oof_metrics(rows),
        "pretrained_as_is": oof_metrics(rows, "prob_fake_pretrained"),
        "counts": dict(Counter(f"{r['kind']}:{r['label']}" for r in rows)),
        "schedule": schedule(args), "train_seconds": round(time.time() - t0, 1),
    }
    (OUT_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def schedule(args: argparse.Namespace) -> dict[str, Any]:
    return {"variant": VARIANT, "frozen_blocks": args.frozen_blocks, "steps": args.steps,
            "final_steps": args.final_steps, "batch": args.batch, "lr": args.lr,
            "weight_decay": 1e-4, "optimizer": "Adam", "loss": "cross-entropy",
            "eval_windows": EVAL_WINDOWS, "aug_windows": AUG_WINDOWS,
            "pseudo_share_of_fakes": PSEUDO_SHARE, "seed": args.seed}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", action="store_true", help="build the front-end cache")
    parser.add_argument("--folds", action="store_true", help="cross-fit: OOF scores, metrics")
    parser.add_argument("--final", action="store_true", help="fine-tune on every file")
    parser.add_argument("--export", metavar="VERSION", default=None,
                        help="export the final model to models/audio/VERSION")
    parser.add_argument("--export-folds", metavar="VERSION", default=None,
                        help="export each fold model to runs/real/audio/VERSION/fold<k>/repo "
                             "(what training.real.score reads for held-out audio features)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--final-steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--frozen-blocks", type=int, default=FROZEN_BLOCKS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="first N files (smoke runs)")


def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    seed_everything(args.seed)
    index = read_index()
    if not index:
        raise SystemExit("no pack: run `python -m training pack` first")
    folds = assign_folds(index)
    records = audio_records(index)[: args.limit]
    directory = cache_dir(VARIANT, args.frozen_blocks)
    if args.cache:
        build_cache(records, load_pretrained(VARIANT), args.frozen_blocks, directory, args.seed)
    ws = load_cache(records, directory) if (args.folds or args.final) else None
    if args.folds and ws is not None:
        metrics = run_folds(ws, folds, args)
        print(json.dumps({k: metrics[k]["pooled"]["auc"]
                          for k in ("fine_tuned", "pretrained_as_is")}))
    if args.final and ws is not None:
        everyone = np.flatnonzero(np.array([fold_of(r, folds) >= 0 for r in ws.records]))
        train_model(ws, everyone, args.final_steps, args.batch, args.frozen_blocks,
                    OUT_DIR / "final", args.seed + 100, args.lr, args.device)
    if args.export:
        model = load_trained(OUT_DIR / "final", args.frozen_blocks)
        metrics = json.loads((OUT_DIR / "metrics.json").read_text())
        version_dir = export_audio(model, args.export, metrics, schedule(args))
        print(f"exported {version_dir}")
    if args.export_folds:
        for repo in export_folds(args.export_folds, schedule(args)):
            print(f"exported {repo}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.real.audio",
                                     description=__doc__.split("\n")[0])
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
