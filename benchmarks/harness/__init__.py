"""ferrule benchmark harness (see benchmarks/README.md)."""
