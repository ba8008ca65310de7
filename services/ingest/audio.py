"""The first audio track as mono float32 PCM at 16 kHz, decoded by the ffmpeg binary."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from services.ingest.probe import PROTOCOL_WHITELIST
from services.ingest.rejections import Undecodable

BYTES_PER_SAMPLE = 4  # float32


async def decode_audio_pcm(path: Path, sample_rate: int, timeout: float) -> bytes:
    """Mono float32 little-endian PCM of the first audio stream, resampled to
    `sample_rate`. InvalidInput when ffmpeg cannot decode it in `timeout` seconds."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
           "-protocol_whitelist", PROTOCOL_WHITELIST, "-i", str(path),
           "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sample_rate),
           "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        pcm, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        raise Undecodable(f"the audio track could not be decoded within {timeout:.0f} s; "
                           "re-encode it and try again") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        reason = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        raise Undecodable(f"the audio track cannot be decoded: {reason[0][:200]}")
    usable = len(pcm) - len(pcm) % BYTES_PER_SAMPLE
    return pcm[:usable]


def pcm_chunks(pcm: bytes, sample_rate: int, chunk_seconds: float) -> Iterator[tuple[int, bytes]]:
    """(start_sample, bytes) pieces of `chunk_seconds` each (the last may be shorter)."""
    samples_per_chunk = max(1, int(sample_rate * chunk_seconds))
    step = samples_per_chunk * BYTES_PER_SAMPLE
    for offset in range(0, len(pcm), step):
        yield offset // BYTES_PER_SAMPLE, pcm[offset : offset + step]
