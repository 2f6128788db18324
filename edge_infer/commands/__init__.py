"""One module per ``edge-infer`` verb (see :mod:`edge_infer.cli`); :func:`handle_errors` wraps every tool."""

from ._common import handle_errors as handle_errors  # the project's other tools import it from here
