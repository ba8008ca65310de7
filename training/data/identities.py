"""Identity groups of the real media and identity-disjoint train/val/test splits.

../shared/data has no identity labels, only hints in file names (MANIFEST notes say so).
Files are grouped by union-find over name keys: a file joins every group whose key occurs
in its name, so a photo of two people ("obama_and_biden", "kit_with_rose") merges both
people's groups and no person can end up in two splits. Where the names say nothing
reliable the whole source set is one group (all deepface test images, all GRID clips:
their identities repeat across files under opaque names). Everything else is its own group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

SPLITS = ("train", "val", "test")

IDENTITY_KEYS: dict[str, Sequence[str]] = {
    # group name: substrings of a lower-cased file name that identify the person or set
    "deepface_set": ("deepface__img", "deepface__couple", "deepface__target",
                     "angelina_jolie"),
    "obama": ("obama",),
    "biden": ("biden",),
    "alex_lacamoire": ("lacamoire",),
    "lin_manuel_miranda": ("lin-manuel-miranda", "hamilton"),
    "kit_harington": ("kit_harington", "johnsnow", "kit_with_rose"),
    "rose_leslie": ("rose_leslie", "kit_with_rose"),
    "bradley_cooper": ("bradley_cooper", "longoria-cooper"),
    "clapton": ("clapton",),
    "lennon": ("lennon",),
    "john_salley": ("john_salley",),
    "john_savage": ("john_savage",),
    "john_schneider": ("john_schneider",),
    "john_shimkus": ("john_shimkus",),
    "john_simm": ("john_simm",),
    "grid_speakers": ("lipnet__grid_",),
    "tom_cruise": ("tom_cruise",),
}
FORCED_SPLIT = {"deepface_set": "train"}
"""The largest opaque set always trains; it would swamp a small val or test split."""


def identity_group(name: str) -> str:
    """The group a single file name belongs to before merging (first matching key)."""
    lowered = name.lower()
    for group, keys in IDENTITY_KEYS.items():
        if any(k in lowered for k in keys):
            return group
    stem = lowered.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"file:{stem}"


def group_files(names: Iterable[str]) -> dict[str, str]:
    """Map every file name to its merged identity group (union-find over matching keys)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    names = list(names)
    per_file: dict[str, list[str]] = {}
    for name in names:
        lowered = name.lower()
        groups = [g for g, keys in IDENTITY_KEYS.items() if any(k in lowered for k in keys)]
        per_file[name] = groups or [identity_group(name)]
        for other in per_file[name][1:]:
            parent[find(other)] = find(per_file[name][0])
    return {name: find(groups[0]) for name, groups in per_file.items()}


def _stable_fraction(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_groups(group_sizes: dict[str, int],
                 fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                 seed: int = 0) -> dict[str, str]:
    """Assign whole groups to train/val/test, filling val and test to their share of items.

    Groups are visited in a seeded, stable pseudo-random order; each goes to the split
    furthest below its target share. Deterministic for a given seed and set of groups.
    """
    total = sum(group_sizes.values())
    targets = {s: f * total for s, f in zip(SPLITS, fractions, strict=True)}
    filled = dict.fromkeys(SPLITS, 0)
    assignment: dict[str, str] = {}
    for group, split in FORCED_SPLIT.items():
        if group in group_sizes:
            assignment[group] = split
            filled[split] += group_sizes[group]
    order = sorted((g for g in group_sizes if g not in assignment),
                   key=lambda g: _stable_fraction(g, seed))
    for group in order:
        split = max(SPLITS, key=lambda s: (targets[s] - filled[s]) / max(targets[s], 1e-9))
        assignment[group] = split
        filled[split] += group_sizes[group]
    return assignment
