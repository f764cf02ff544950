"""Benchmark of the pipeline at scale: synthetic warehouse, full / incremental / no-change
syncs to the mock destinations, a naive Python baseline and the raw DuckDB floor.

Run ``make bench`` or ``python -m bench run --customers 100000``; see ``bench/README.md``.
"""
