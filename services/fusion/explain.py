"""The short explanation that comes with a verdict: which branches drove it, and what was
missing or had no input."""

from __future__ import annotations

from collections.abc import Mapping

from dfmesh.branches import BRANCHES

# branch -> (phrase when it points to fake, phrase when it points to real)
PHRASES: dict[str, tuple[str, str]] = {b.name: b.phrases for b in BRANCHES}
MAX_DRIVERS = 3


def _phrase(branch: str, prob_fake: float, sync_prob: float | None) -> str:
    fake, real = PHRASES.get(branch, (f"{branch} says fake", f"{branch} says real"))
    text = fake if prob_fake >= 0.5 else real
    # sync is reported as sync_prob (higher = in sync), the way DESIGN.md names it.
    shown = sync_prob if branch == "sync" and sync_prob is not None else prob_fake
    return f"{text} ({branch} {shown:.2f})"


def explain(*, deepfake: bool, probs: Mapping[str, float], used: list[str],
            sync_prob: float | None = None, missing: Mapping[str, str] | None = None,
            no_input: Mapping[str, str] | None = None, note: str = "") -> str:
    """E.g. "visual artifacts detected (visual 0.91); audio consistent with lip motion
    (sync 0.88); missing: mri (unavailable)".

    `probs` are the branches' P(fake); `used` the branches the score came from. Drivers are
    the used branches that agree with the verdict, strongest first; when none agrees, the
    strongest used branch is named.
    """
    agreeing = [b for b in used if b in probs and (probs[b] >= 0.5) == deepfake]
    pool = agreeing or [b for b in used if b in probs]
    pool.sort(key=lambda b: -abs(probs[b] - 0.5))
    parts = [_phrase(b, probs[b], sync_prob) for b in pool[:MAX_DRIVERS]]
    if pool and not agreeing:
        parts.insert(0, "the fused score outweighs every single branch")
    if note:
        parts.insert(0, note)
    if no_input:
        parts.append("no input for " + ", ".join(f"{b} ({why})" for b, why in no_input.items()))
    if missing:
        parts.append("missing: " + ", ".join(f"{b} ({why})" for b, why in missing.items()))
    return "; ".join(parts)
