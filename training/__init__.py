"""Training the convolutional autoencoder on wafer maps (PyTorch).

Not part of the installed wheel: it runs from a checkout of edge-infer, with
the ``train`` extra (``pip install -e '.[train]'``) or ``make model``.
"""

from __future__ import annotations

import importlib.util
import sys


def require_torch(what: str) -> None:
    """Exit with one line naming the ``train`` extra when PyTorch is missing."""
    if importlib.util.find_spec("torch") is None:
        print(f"error: {what} needs PyTorch, which this environment lacks; from a checkout of "
              "edge-infer: pip install -e '.[train]' (or make model)", file=sys.stderr)
        raise SystemExit(1)
