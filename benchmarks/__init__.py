"""Speed and memory benchmarks, each against a naive baseline in the same run (see README.md here)."""
