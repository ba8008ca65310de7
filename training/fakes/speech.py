"""Registered, seeded speech spoofs: more kinds of synthetic speech than the real labelled
fakes offer, so the audio model learns "made by a machine" rather than one demo page.

A recipe is `(pcm, rng) -> pcm`: 16 kHz mono float32 in, 16 kHz mono float32 out. Resynthesis
recipes keep the words and the speaker of `pcm` and lose what their vocoder loses; TTS
recipes ignore the content of `pcm` and speak a sentence of their own, about as long.

    griffin_lim_stft, griffin_lim_mel, lpc_vocoder, phase_vocoder   training/audio/spoof.py
    world_vocoder     WORLD analysis (DIO/StoneMask F0, CheapTrick envelope, D4C
                      aperiodicity) and synthesis, with a coded envelope and an F0 tweak:
                      the vocoder of parametric TTS and many voice-conversion systems (pyworld)
    tts_espeak        formant synthesis, espeak-ng (Debian package espeak-ng)
    tts_flite         diphone/cluster-unit synthesis, flite (Debian package flite)

`make_spoof(name, pcm, seed)` is reproducible: the same name, input and seed give the same
output. `available_recipes()` lists the recipes whose tools are installed here; the TTS and
WORLD recipes need `DFMESH_SETUP_TRAIN_DEPS=1 bash scripts/setup.sh` (or the train extra and
the two apt packages) and are skipped, not failed, without them.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.audio import spoof
from training.loaders.media import decode_bytes

SR = 16_000
Recipe = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class SpeechRecipe:
    """A registered spoof: the function, what it needs installed, and whether it is TTS."""

    name: str
    fn: Recipe
    needs: tuple[str, ...] = ()
    """"module:<python module>" or "bin:<executable>"."""
    tts: bool = False


RECIPES: dict[str, SpeechRecipe] = {}


def register_recipe(name: str, needs: tuple[str, ...] = (), tts: bool = False
                    ) -> Callable[[Recipe], Recipe]:
    """Decorator adding a recipe to RECIPES under `name`."""

    def add(fn: Recipe) -> Recipe:
        if name in RECIPES:
            raise ValueError(f"speech recipe {name!r} is already registered")
        RECIPES[name] = SpeechRecipe(name, fn, needs, tts)
        return fn

    return add


def _installed(need: str) -> bool:
    kind, _, what = need.partition(":")
    if kind == "bin":
        return shutil.which(what) is not None
    return importlib.util.find_spec(what) is not None


def available_recipes() -> list[str]:
    """Names of the recipes whose tools are installed here."""
    return [n for n, r in RECIPES.items() if all(_installed(x) for x in r.needs)]


def make_spoof(name: str, pcm: np.ndarray, seed: int) -> np.ndarray:
    """Run recipe `name` on `pcm` with a generator seeded by `seed`; float32 in [-1, 1]."""
    recipe = RECIPES[name]
    missing = [x for x in recipe.needs if not _installed(x)]
    if missing:
        raise RuntimeError(f"speech recipe {name} needs {', '.join(missing)}; "
                           "run DFMESH_SETUP_TRAIN_DEPS=1 bash scripts/setup.sh")
    out = recipe.fn(np.ascontiguousarray(pcm, np.float32), np.random.default_rng(seed))
    return np.clip(np.nan_to_num(out), -1.0, 1.0).astype(np.float32)


for _name, _fn in spoof.RESYNTHESIS.items():
    register_recipe(_name)(_fn)


@functools.cache
def _pyworld():  # noqa: ANN202 - the module
    with warnings.catch_warnings():  # pyworld 0.3.5 imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


@register_recipe("world_vocoder", needs=("module:pyworld",))
def world_vocoder(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """WORLD analysis-synthesis with the envelope coded to 24-60 coefficients (as a
    parametric TTS would predict it) and F0 scaled by 0.9-1.1."""
    pw = _pyworld()
    x = pcm.astype(np.float64)
    frame_ms = float(rng.choice([5.0, 10.0]))
    f0, t = pw.dio(x, SR, frame_period=frame_ms)
    f0 = pw.stonemask(x, f0, t, SR)
    envelope = pw.cheaptrick(x, f0, t, SR)
    aperiodicity = pw.d4c(x, f0, t, SR)
    fft_size = pw.get_cheaptrick_fft_size(SR)
    dims = int(rng.integers(24, 61))
    envelope = pw.decode_spectral_envelope(
        np.ascontiguousarray(pw.code_spectral_envelope(envelope, SR, dims)), SR, fft_size)
    f0 = f0 * float(rng.uniform(0.9, 1.1))
    y = pw.synthesize(f0, np.ascontiguousarray(envelope), aperiodicity, SR, frame_period=frame_ms)
    return spoof._match_rms(spoof._fit_length(y, pcm.size), pcm)


SUBJECTS = ("the old station", "my neighbour", "the committee", "a small boat", "the river",
            "our teacher", "the morning train", "this report", "the city council", "a stranger")
VERBS = ("reached", "described", "followed", "ignored", "announced", "carried", "repaired",
         "remembered", "painted", "questioned")
OBJECTS = ("the long letter", "every window in the house", "a quiet plan for the weekend",
           "the results of the survey", "the bridge near the market", "an empty garden",
           "the price of bread", "a story about the war", "the last bus home", "seven boxes")
TAILS = ("before the rain started", "without saying a word", "late last night",
         "as everyone expected", "for the second time", "in the middle of winter", "",
         "after a long discussion", "on the way to work", "with great care")


def random_sentences(rng: np.random.Generator, count: int) -> str:
    """`count` plain English sentences drawn from small word lists (any text will do)."""
    parts = []
    for _ in range(count):
        words = [str(rng.choice(SUBJECTS)), str(rng.choice(VERBS)), str(rng.choice(OBJECTS)),
                 str(rng.choice(TAILS))]
        sentence = " ".join(w for w in words if w)
        parts.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(parts)


def _speak(cmd: list[str]) -> np.ndarray:
    """Run a TTS command that writes WAV to stdout; 16 kHz float32 PCM."""
    proc = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    return decode_bytes(proc.stdout, SR)


def _tts_length(y: np.ndarray, pcm: np.ndarray) -> np.ndarray:
    """Trim to the reference's length (a TTS clip is never tiled from silence)."""
    y = y[: max(pcm.size, SR)] if y.size else np.zeros(SR, np.float32)
    return spoof._match_rms(y, pcm) if np.any(pcm) else y


@register_recipe("tts_espeak", needs=("bin:espeak-ng",), tts=True)
def tts_espeak(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """espeak-ng in a random English voice, speed and pitch."""
    voice = str(rng.choice(["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp"]))
    variant = str(rng.choice(["m1", "m3", "m5", "f1", "f3", "f4"]))
    text = random_sentences(rng, 1 + pcm.size // (3 * SR))
    cmd = ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(int(rng.integers(130, 190))),
           "-p", str(int(rng.integers(30, 70))), "--stdout", text]
    return _tts_length(_speak(cmd), pcm)


@register_recipe("tts_flite", needs=("bin:flite",), tts=True)
def tts_flite(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """flite in a random built-in voice and speaking rate."""
    voice = str(rng.choice(["kal", "kal16", "awb", "rms", "slt"]))
    text = random_sentences(rng, 1 + pcm.size // (3 * SR))
    stretch = f"{rng.uniform(0.85, 1.2):.2f}"
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text,
           "-o", "/dev/stdout"]
    return _tts_length(_speak(cmd), pcm)
