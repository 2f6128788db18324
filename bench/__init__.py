"""Developer benchmark drivers (not installed): ``make bench`` runs ``python -m bench.bench_all``.

The user-facing benchmark is ``edge-infer bench`` (:mod:`edge_infer.bench`);
everything here compares it with PyTorch, other checkouts or other graphs.
"""
