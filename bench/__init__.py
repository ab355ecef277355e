"""Benchmarks: run from the repository root as ``python -m bench.NAME`` (``make bench`` runs all).

Each prints a table and ends with one JSON line of figures measured against a baseline in the
same run.
"""
