"""Real labelled media (../shared/train, ../shared/data): sources, the ingest-made pack, and
source-disjoint folds for honest leave-sources-out figures."""
