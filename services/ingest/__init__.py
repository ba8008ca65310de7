"""The ingest service: an upload in, a stream of frames, faces, mouth crops and audio out.

    servicer   protobuf <-> plain Python, concurrency slots
    pipeline   the stages in stream order, as an async generator of plain results
    spool      upload chunks -> private temp file, size limit, sha256
    probe      ffprobe: what the file is, limits on it
    decode     OpenCV frame sampling (ffmpeg transcode fallback), the dense window
    faces      MTCNN on downscaled frames, face and mouth crops, box interpolation
    audio      ffmpeg -> mono 16 kHz float32 PCM
"""
