"""Benchmarks: each measures our path and its baseline side by side in one run and prints ratios."""
