"""One module per ``edge-infer`` verb; see :mod:`edge_infer.cli` for the pattern.

:func:`handle_errors` is the one entry-point wrapper of the project: every
command line (``edge-infer``, ``python -m training``, ``python -m export``,
the evaluation and sweep) wraps its command in it, so errors, Ctrl-C and
warnings read the same everywhere.
"""

from ._common import handle_errors

__all__ = ["handle_errors"]
