"""PNG pictures of wafer maps: grids of maps with labels and the die palette's legend, drawn with pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .files import atomic_path
from .wafer import MAP_SIZE, STATE_NAMES

#: Die state → RGB in every figure: off-wafer quiet (light grey), normal and defect apart for colour-blind readers.
PALETTE: dict[str, tuple[int, int, int]] = {"boundary": (222, 222, 222), "normal": (84, 120, 160),
                                             "defect": (240, 120, 20)}
BACKGROUND, TEXT = (255, 255, 255), (30, 30, 30)
DIE_PX = 6  # pixels per die
GAP_PX = 1  # white line between dies, so single defective dies stay visible
MARGIN = 12  # between maps and around the figure


def map_pixels(m: np.ndarray, *, die_px: int = DIE_PX, gap: int = GAP_PX) -> np.ndarray:
    """RGB uint8 pixels of one map (one-hot, probabilities or states): ``die_px`` squares, ``gap`` white between."""
    arr = np.asarray(m)
    if not (arr.ndim == 2 or arr.ndim == 3 and arr.shape[-1] == 3):
        raise ValueError(f"cannot draw an array of shape {arr.shape} as a wafer map")
    states = arr.argmax(axis=-1) if arr.ndim == 3 else arr.astype(np.int64)
    colours = np.array([PALETTE[s] for s in STATE_NAMES], dtype=np.uint8)[np.clip(states, 0, 2)]
    cell = die_px + gap
    big = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    big[np.arange(big.shape[0]) % cell >= die_px, :] = BACKGROUND
    big[:, np.arange(big.shape[1]) % cell >= die_px] = BACKGROUND
    return np.ascontiguousarray(big[:big.shape[0] - gap, :big.shape[1] - gap])


def render_grid(rows: Sequence[Sequence[Optional[np.ndarray]]], row_labels: Optional[Sequence[str]] = None,
                col_labels: Optional[Sequence[str]] = None, *, title: Optional[str] = None, legend: bool = True,
                die_px: int = DIE_PX, gap: int = GAP_PX) -> "PIL.Image.Image":  # noqa: F821 -- pillow imported lazily
    """A grid picture of maps (``rows[r][c]``; None is a blank cell), labels left and above, a title, the legend."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()

    def text_size(s: str) -> tuple[int, int]:
        left, top, right, bottom = font.getbbox(s)
        return right - left, bottom - top

    n_cols = max((len(r) for r in rows), default=0)
    side_h, side_w = next((map_pixels(m, die_px=die_px, gap=gap).shape[:2] for r in rows for m in r if m is not None),
                          (MAP_SIZE * (die_px + gap) - gap,) * 2)  # all blank: cells the size of a map
    line_h = text_size("Ag")[1] + 4
    label_w = max((text_size(s)[0] for s in row_labels or []), default=0)
    left = MARGIN + (label_w + MARGIN if label_w else 0)
    top = MARGIN + (line_h + 4 if title else 0) + (line_h if col_labels else 0)
    legend_h = line_h + MARGIN if legend else 0
    col_w = max([side_w] + [text_size(s)[0] + 4 for s in col_labels or []])
    width = max(left + n_cols * (col_w + MARGIN), MARGIN + 3 * (line_h + 90) if legend else 0)
    height = top + len(rows) * (side_h + MARGIN) + legend_h
    img = Image.new("RGB", (max(width, 1), max(height, 1)), BACKGROUND)
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=TEXT, font=font)
    for c, label in enumerate(col_labels or []):
        draw.text((left + c * (col_w + MARGIN), top - line_h), label, fill=TEXT, font=font)
    for r, row in enumerate(rows):
        y = top + r * (side_h + MARGIN)
        if row_labels and r < len(row_labels):
            draw.text((MARGIN, y + side_h // 2 - line_h // 2), row_labels[r], fill=TEXT, font=font)
        for c, m in enumerate(row):
            if m is not None:
                img.paste(Image.fromarray(map_pixels(m, die_px=die_px, gap=gap)), (left + c * (col_w + MARGIN), y))
    if legend:
        y = height - legend_h + MARGIN // 2
        for i, name in enumerate(STATE_NAMES):
            x = MARGIN + i * (line_h + 90)
            draw.rectangle([x, y, x + line_h - 4, y + line_h - 4], fill=PALETTE[name], outline=TEXT)
            draw.text((x + line_h + 2, y), name, fill=TEXT, font=font)
    return img


def save_png(image: "PIL.Image.Image", path: Union[str, Path], *, force: bool = False) -> Path:  # noqa: F821
    """Write ``image`` as PNG at ``path``, atomically (never a half-written file)."""
    with atomic_path(path, force=force) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
