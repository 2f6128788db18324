"""One module per ``edge-infer`` verb (see :mod:`edge_infer.cli`); :func:`handle_errors` is the
project's one entry-point wrapper."""

from ._common import handle_errors

__all__ = ["handle_errors"]
