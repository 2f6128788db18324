"""``python -m training.evaluation``: see :mod:`training.evaluation.cli`."""

from .cli import main

main()
