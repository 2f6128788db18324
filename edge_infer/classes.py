"""The WM-811K class names of this data set, in label-index order.

A module of its own, without numpy, so the command line can list the names in
``--help`` without importing anything heavy.
"""

from __future__ import annotations

#: WM-811K pattern classes in label-index order (the course ``label.npy``).
#: This is the one list of names: training, export, the manifest, the CLI and
#: every picture read it. The order is the data's, not WM-811K's alphabetical
#: list (which puts Near-full at 5): the maps show it (index 7 is nearly all
#: defect, 6 thin lines, 5 scattered), and ``tests/edge_infer/test_class_names.py`` ties
#: each name to those figures. edge-infer 0.1 had 5, 6, 7 as Near-full,
#: Random, Scratch.
CLASS_NAMES = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Random",
    "Scratch",
    "Near-full",
    "None",
)
