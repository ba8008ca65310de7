"""Spool an upload to a private temporary file, enforcing the size limit while receiving."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from services.ingest.rejections import NoSpace, TooLarge

MEDIA_EXTENSIONS = frozenset({
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "mts", "flv", "wmv", "3gp",
    "ogv", "ogg", "wav", "mp3", "m4a", "aac", "flac", "opus", "jpg", "jpeg", "png", "bmp",
    "webp", "gif", "tif", "tiff",
})
"""Extensions kept as a hint for ffmpeg's format detection; anything else is dropped."""

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"})


def extension_hint(filename: str) -> str:
    """The lower-case extension of an advisory file name if it is a known media extension,
    else "". The name itself never becomes part of a path."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return ext if ext in MEDIA_EXTENSIONS else ""


@dataclass(frozen=True)
class SpooledUpload:
    """An upload on local disk."""

    path: Path
    size_bytes: int
    sha256: str


def too_large(size: int, limit: int) -> TooLarge:
    """The error for an upload of `size` bytes (or more) over `limit`."""
    return TooLarge(
        f"upload too large: {size} bytes or more, the limit is {limit} bytes "
        f"({limit / 2**20:.0f} MiB, DFMESH_MAX_UPLOAD_BYTES); trim or re-encode the clip")


async def spool_chunks(chunks: AsyncIterator[bytes], path: Path, max_bytes: int) -> SpooledUpload:
    """Write `chunks` to `path` (created new, mode 0600) and hash them; stop as soon as the
    total passes `max_bytes`. The caller removes the file."""
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("xb") as out:
            path.chmod(0o600)
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(size, max_bytes)
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise NoSpace("ingest has no disk space left for uploads (DFMESH_TEMP_DIR is full); "
                      "retry shortly or on another replica", retry_after_seconds=5.0) from None
    return SpooledUpload(path, size, digest.hexdigest())
