"""Benchmarks: speed and memory targets, figures printed side by side as ratios."""
