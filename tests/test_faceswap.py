"""The autoencoder face swapper: trained on packed real clips through the shared loop, then
drawn by the `ae_swap` pseudo-fake, which changes a face only inside its mask and only with
the decoders of people in the trainer's own reals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.fakes import faceswap  # noqa: E402
from training.fakes.registry import DonorPool, Face  # noqa: E402
from training.real.sources import read_train_manifest  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "training" / "recipes" / "faceswap-1.0.0.json"


@pytest.fixture(scope="module")
def packed_clips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[list]:
    """Three real clips of three sources, packed as training.real.pack packs them."""
    from training.real import pack

    root = shared_data.parent / "train"
    if not (root / "MANIFEST.csv").is_file():
        pytest.skip(f"no labelled training media at {root}")
    picks, sources = [], set()
    for row in read_train_manifest(root):
        if row.kind == "video" and row.label == 0 and row.source not in sources:
            picks.append(row)
            sources.add(row.source)
        if len(picks) == 3:
            break
    out = tmp_path_factory.mktemp("pack")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pack, "pack_dir", lambda: out)  # load_entry reads the pack made here
        yield pack.build_pack(picks, out, workers=1)


def test_swapper_trains_on_the_shared_loop_and_swaps_inside_the_mask(
        packed_clips: list, tmp_path: Path) -> None:
    import cv2

    from training.real.faceswap import preview, train
    from training.real.pack import load_entry

    recipe = json.loads(RECIPE.read_text()) | {"width": 8, "code": 32, "train_steps": 40,
                                               "identities_per_step": 2, "threads": 1}
    run = tmp_path / "swapper"
    train(recipe, packed_clips, run, "cpu")
    losses = torch.load(run / "checkpoint.pt", weights_only=False)["losses"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])  # it learns to rebuild faces
    swapper = faceswap.Swapper.load(run)
    assert [i.path for i in swapper.identities] == sorted(r["path"] for r in packed_clips)

    faces = []
    for r in packed_clips:
        entry = load_entry(r)
        faces += [Face(c, m, r["group"]) for c, m in zip(entry["crops"][:2],
                                                         entry["landmarks"][:2], strict=True)]
    target = faces[0]
    faceswap.use_swapper(None)
    with pytest.raises(RuntimeError, match="trained swapper"):
        faceswap.autoencoder_swap(target, np.random.default_rng(0), DonorPool(faces))
    faceswap.use_swapper(swapper)
    try:
        out = faceswap.autoencoder_swap(target, np.random.default_rng(0), DonorPool(faces))
        assert out.crop.shape == target.crop.shape and out.crop.dtype == np.uint8
        changed = np.abs(out.crop.astype(int) - target.crop).max(axis=2) > 0
        assert changed.any() and not changed[out.mask == 0].any()
        # only decoders of people among the donors' groups: none but the target's own here
        alone = DonorPool([f for f in faces if f.group == target.group])
        with pytest.raises(RuntimeError, match="no decoder"):
            faceswap.autoencoder_swap(target, np.random.default_rng(0), alone)
    finally:
        faceswap.use_swapper(None)
    preview(swapper, packed_clips, tmp_path / "preview.jpg")
    # a row per clip: crop, aligned, own decoder, another's decoder, ae_swap
    assert cv2.imread(str(tmp_path / "preview.jpg")).shape == (3 * 96, 5 * 96, 3)
