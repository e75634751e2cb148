"""Helpers that start real infrastructure for paddock's tests and benchmarks (never shipped)."""
