"""The lip-sync branch: aligned/shifted/swapped mouth-audio pairs, SyncNet, training."""
