"""PNG grids: the die palette, layout sizes, atomic saving."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge_infer.errors import OutputError
from edge_infer.render import DIE_PX, GAP_PX, MARGIN, PALETTE, map_pixels, render_grid, save_png
from edge_infer.wafer import to_onehot

SIDE = 26 * (DIE_PX + GAP_PX) - GAP_PX


def _states(seed: int = 0) -> np.ndarray:
    s = np.random.default_rng(seed).integers(1, 3, size=(26, 26))
    s[0, :] = 0  # a boundary row
    return s


def test_map_pixels_uses_the_palette_for_each_die():
    states = _states()
    px = map_pixels(states)
    assert px.shape == (SIDE, SIDE, 3) and px.dtype == np.uint8
    step = DIE_PX + GAP_PX
    for (r, c) in [(0, 0), (5, 7), (25, 25), (13, 2)]:
        name = ("boundary", "normal", "defect")[states[r, c]]
        assert tuple(px[r * step + 1, c * step + 1]) == PALETTE[name]
    # the gap between dies is white
    assert tuple(px[DIE_PX, 0]) == (255, 255, 255)
    # one-hot and die states draw the same picture
    np.testing.assert_array_equal(map_pixels(to_onehot(states)), px)


def test_the_three_die_states_have_distinct_colours():
    assert len({PALETTE[name] for name in ("boundary", "normal", "defect")}) == 3


def test_grid_size_is_maps_plus_margins():
    m = to_onehot(_states())
    bare = render_grid([[m, m, m], [m, None, m]], legend=False)
    assert bare.size == (MARGIN + 3 * (SIDE + MARGIN), MARGIN + 2 * (SIDE + MARGIN))
    labelled = render_grid([[m, m, m], [m, None, m]], row_labels=["a", "b"], col_labels=["x", "y", "z"], title="t")
    assert labelled.width > bare.width and labelled.height > bare.height
    assert labelled.mode == "RGB"
    # the blank cell stays background
    left = bare.width - 2 * (SIDE + MARGIN)
    assert bare.getpixel((left + SIDE // 2, MARGIN + SIDE + MARGIN + SIDE // 2)) == (255, 255, 255)


def test_save_png_opens_and_refuses_to_overwrite(tmp_path):
    img = render_grid([[_states(1), _states(2)]], col_labels=["one", "two"])
    path = save_png(img, tmp_path / "grid.png")
    with Image.open(path) as back:
        assert back.format == "PNG" and back.size == img.size
        np.testing.assert_array_equal(np.asarray(back.convert("RGB")), np.asarray(img))  # exactly the pixels drawn
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        save_png(render_grid([[_states(3)]]), path)
    assert path.read_bytes() == before
    save_png(render_grid([[_states(3)]]), path, force=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left


def test_save_png_into_an_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        save_png(render_grid([[_states()]]), blocker / "grid.png")


def test_bad_map_shape():
    with pytest.raises(ValueError):
        map_pixels(np.zeros((26, 26, 4)))
