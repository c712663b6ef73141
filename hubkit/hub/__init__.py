"""The Hub side of hubkit: a local Hub-compatible server (for tests, the demo and air-gapped use)."""
