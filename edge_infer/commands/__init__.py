"""One module per ``edge-infer`` verb (see :mod:`edge_infer.cli`); :func:`handle_errors` wraps every tool."""

from ._common import handle_errors

__all__ = ["handle_errors"]
