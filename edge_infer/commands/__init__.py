"""One module per ``edge-infer`` verb; see :mod:`edge_infer.cli` for the pattern."""
