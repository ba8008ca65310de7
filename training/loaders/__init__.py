"""Reading media and datasets: ffmpeg/OpenCV decoding, talking clips and their splits, dense
face tracks, and public dataset layouts (DFDC, FaceForensics++, ASVspoof, real/fake folders)."""
