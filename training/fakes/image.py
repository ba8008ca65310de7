"""Built-in image manipulations: self-blending, face swaps, GAN-like upsampling, double JPEG.

Each blends a changed copy of a face back into the real crop through a random deformed face
mask (training.fakes.masks), because the boundary and the statistics mismatch it leaves are
what generalizing detectors learn (Shiohara & Yamasaki, "Detecting Deepfakes with
Self-Blended Images", CVPR 2022; Li et al., "Face X-ray", CVPR 2020).
"""

from __future__ import annotations

import cv2
import numpy as np

from training.fakes.masks import random_blend_mask
from training.fakes.registry import DonorPool, Face, Manipulated, register_manipulation

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip an RGB image through JPEG at `quality`."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def colour_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random hue, saturation, brightness, contrast and per-channel shifts."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    hsv[..., 1] *= rng.uniform(0.8, 1.2)
    hsv[..., 2] *= rng.uniform(0.85, 1.15)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out = (out - out.mean()) * rng.uniform(0.85, 1.15) + out.mean() + rng.uniform(-12, 12, 3)
    return np.clip(out, 0, 255).astype(np.uint8)


def frequency_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of: blur, sharpen, down-and-up resampling, JPEG; changes high frequencies only."""
    kind = int(rng.integers(4))
    if kind == 0:
        k = int(rng.integers(1, 3)) * 2 + 1
        return cv2.GaussianBlur(image, (k, k), 0)
    if kind == 1:
        return unsharp(image, 1.5, rng.uniform(0.3, 1.2))
    if kind == 2:
        f = rng.uniform(0.35, 0.8)
        return down_up(image, f, cv2.INTER_LINEAR, int(rng.choice(
            [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST])))
    return jpeg(image, int(rng.integers(30, 80)))


def unsharp(image: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """Unsharp masking: the image plus `amount` times its difference from a Gaussian blur."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigma).astype(np.float32)
    return np.clip(image + amount * (image - blurred), 0, 255).astype(np.uint8)


def down_up(image: np.ndarray, factor: float, down: int, up: int) -> np.ndarray:
    """The image resampled to `factor` of its size (at least 8 px) and back, with the given
    OpenCV interpolations."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(8, int(w * factor)), max(8, int(h * factor))),
                       interpolation=down)
    return cv2.resize(small, (w, h), interpolation=up)


def small_shift(image: np.ndarray, rng: np.random.Generator, max_frac: float = 0.02) -> np.ndarray:
    """Slight random scale and translation (the source is never perfectly aligned)."""
    h, w = image.shape[:2]
    scale = rng.uniform(0.97, 1.03)
    tx, ty = rng.uniform(-max_frac, max_frac, 2) * (w, h)
    matrix = np.array([[scale, 0, (1 - scale) * w / 2 + tx],
                       [0, scale, (1 - scale) * h / 2 + ty]], np.float32)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None]
    return np.clip(source.astype(np.float32) * m + target.astype(np.float32) * (1 - m),
                   0, 255).round().astype(np.uint8)


def _blended(face: Face, source: np.ndarray, rng: np.random.Generator,
             name: str) -> Manipulated:
    mask = random_blend_mask(face.landmarks, face.crop.shape[:2], rng)
    mask *= float(rng.choice(BLEND_RATIOS))
    return Manipulated(blend(source, face.crop, mask), mask, name)


@register_manipulation("sbi")
def self_blended(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
    """A colour- and frequency-perturbed, slightly shifted copy of the face blended back in."""
    source = face.crop
    if rng.random() < 0.8:
        source = colour_jitter(source, rng)
    if rng.random() < 0.8:
        source = frequency_jitter(source, rng)
    return _blended(face, small_shift(source, rng), rng, "sbi")


def reinhard_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match source's LAB mean and std to target's inside the mask (colour correction)."""
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = mask > 0.5
    if inside.sum() < 16:
        return source
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
    t_mean, t_std = tgt[inside].mean(0), tgt[inside].std(0) + 1e-3
    out = (src - s_mean) / s_std * t_std + t_mean
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def align_to(donor: Face, target: Face) -> np.ndarray:
    """Warp the donor crop so its five landmarks land on the target's (similarity transform)."""
    matrix, _ = cv2.estimateAffinePartial2D(donor.landmarks, target.landmarks)
    if matrix is None:
        return donor.crop
    h, w = target.crop.shape[:2]
    return cv2.warpAffine(donor.crop, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


@register_manipulation("face_swap")
def face_swap(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
    """Another identity's face, aligned on the landmarks, colour-matched and blended in."""
    donor = donors.pick(rng, exclude_group=face.group)
    if donor is None:
        return self_blended(face, rng, donors)
    aligned = align_to(donor, face)
    mask = random_blend_mask(face.landmarks, face.crop.shape[:2], rng)
    if rng.random() < 0.8:
        aligned = reinhard_transfer(aligned, face.crop, mask)
    if rng.random() < 0.5:
        aligned = frequency_jitter(aligned, rng)
    mask *= float(rng.choice((0.75, 1.0, 1.0)))
    return Manipulated(blend(aligned, face.crop, mask), mask, "face_swap")


def gan_upsample(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Generator-style upsampling traces: downsample, then zero-insertion (transposed
    convolution) upsampling with a small random kernel, which leaves a periodic checkerboard."""
    h, w = image.shape[:2]
    factor = int(rng.choice([2, 2, 4]))
    small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    up = np.zeros((h // factor * factor, w // factor * factor, 3), np.float32)
    up[::factor, ::factor] = small
    base = np.outer(*(2 * [np.bartlett(2 * factor + 1)[1:-1]]))
    kernel = base * rng.uniform(0.8, 1.2, base.shape)
    kernel *= factor * factor / kernel.sum()
    out = cv2.filter2D(up, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT)
    out = cv2.resize(out, (w, h)) if out.shape[:2] != (h, w) else out
    return np.clip(out, 0, 255).astype(np.uint8)


@register_manipulation("gan_upsample")
def gan_upsampled(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
    """The face region regenerated at lower resolution with GAN-like upsampling traces."""
    source = gan_upsample(face.crop, rng)
    if rng.random() < 0.5:
        source = colour_jitter(source, rng)
    return _blended(face, source, rng, "gan_upsample")


@register_manipulation("double_jpeg")
def double_jpeg(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
    """The face region re-compressed on a shifted 8x8 grid, pasted back (splicing traces)."""
    dy, dx = (int(v) for v in rng.integers(1, 8, 2))
    padded = cv2.copyMakeBorder(face.crop, dy, 0, dx, 0, cv2.BORDER_REFLECT)
    source = jpeg(padded, int(rng.integers(25, 70)))[dy:, dx:]
    return _blended(face, source, rng, "double_jpeg")


@register_manipulation("seamless_swap")
def seamless_swap(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
    """Another identity's face warped onto the landmarks and Poisson-blended
    (cv2.seamlessClone), the compositing step of classic face-swap pipelines."""
    donor = donors.pick(rng, exclude_group=face.group)
    if donor is None:
        return self_blended(face, rng, donors)
    aligned = align_to(donor, face)
    mask = random_blend_mask(face.landmarks, face.crop.shape[:2], rng)
    binary = (mask > 0.5).astype(np.uint8) * 255
    ys, xs = np.nonzero(binary)
    if ys.size < 64:
        return face_swap(face, rng, donors)
    centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    mode = cv2.NORMAL_CLONE if rng.random() < 0.7 else cv2.MIXED_CLONE
    try:
        out = cv2.cvtColor(cv2.seamlessClone(cv2.cvtColor(aligned, cv2.COLOR_RGB2BGR),
                                             cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR),
                                             binary, centre, mode), cv2.COLOR_BGR2RGB)
    except cv2.error:
        return face_swap(face, rng, donors)
    return Manipulated(out, binary.astype(np.float32) / 255.0, "seamless_swap")


def smooth_flow(shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator,
                strength: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps of a smooth random displacement (a coarse random grid, bicubically
    upsampled; `strength` pixels of spread), strongest around the mouth, as a motion model
    that moves a still face's jaw and lips."""
    h, w = shape
    grid = int(rng.integers(4, 8))
    flow = cv2.resize(rng.normal(0.0, 1.0, (grid, grid, 2)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC) * strength
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mouth = landmarks[3:5].mean(axis=0)
    sigma = max(float(np.linalg.norm(landmarks[0] - landmarks[1])), 8.0)
    weight = 0.4 + np.exp(-((xx - mouth[0]) ** 2 + (yy - mouth[1]) ** 2) / (2 * sigma ** 2))
    return xx + flow[..., 0] * weight, yy + flow[..., 1] * weight


def rendered(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A talking-head generator's rendering: the frame made at a lower resolution and brought
    up to size (bicubic, or with transposed-convolution traces), sometimes sharpened as face
    enhancers (GFPGAN and the like) leave it."""
    if rng.random() < 0.4:
        out = gan_upsample(image, rng)
    else:
        out = down_up(image, rng.uniform(0.3, 0.6), cv2.INTER_AREA, cv2.INTER_CUBIC)
    if rng.random() < 0.3:
        out = unsharp(out, 1.2, rng.uniform(0.4, 1.0))
    return out


@register_manipulation("reenact")
def reenacted(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
    """The face re-rendered the way image-driven talking-head generators make a frame
    (SadTalker, AniTalker, MakeItTalk: one still face, warped by a motion field and rendered
    again): a smooth warp strongest at the mouth, then `rendered`. Half the time the whole
    crop is the generated frame (no blending boundary to find), half the time it is pasted
    back through a face mask, as their paste-back modes do."""
    map_x, map_y = smooth_flow(face.crop.shape[:2], face.landmarks, rng,
                               float(rng.uniform(1.0, 4.0)))
    warped = cv2.remap(face.crop, map_x, map_y, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    source = rendered(warped, rng)
    if rng.random() < 0.5:
        return Manipulated(source, np.ones(face.crop.shape[:2], np.float32), "reenact")
    return _blended(face, source, rng, "reenact")
