"""The scan pipeline: config, the pair-scoring and generation-probe stages, the long table."""
