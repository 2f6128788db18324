"""Host threads for the numpy steps around the decoder: splitting, errors, and
results that do not depend on the split."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer import hostpool


@pytest.mark.parametrize("start, stop, parts, align", [(0, 1024, 2, 128), (0, 197, 4, 128), (64, 1000, 3, 128), (0, 5, 4, 1), (10, 11, 3, 1)])
def test_split_covers_the_rows_once_on_aligned_edges(start, stop, parts, align):
    pieces = hostpool.split(start, stop, parts, align)
    assert pieces[0][0] == start and pieces[-1][1] == stop
    assert all(a < b for a, b in pieces) and len(pieces) <= parts
    assert all(pieces[i][1] == pieces[i + 1][0] for i in range(len(pieces) - 1))
    assert all((b - start) % align == 0 for _, b in pieces[:-1])


def test_parts_follow_rows_and_threads():
    assert hostpool.parts_for(1, None) == 1
    assert hostpool.parts_for(100_000, 1) == 1  # the caller asked for one thread
    assert hostpool.parts_for(100_000, 2) == 2
    assert hostpool.parts_for(100_000, 64) == hostpool.MAX_PARTS
    assert hostpool.parts_for(2 * hostpool.MIN_ROWS, 8) == 2


def test_for_each_runs_every_piece_and_reraises():
    out = np.zeros(10)

    def fill(piece):
        out[piece[0] : piece[1]] = piece[0] + 1

    hostpool.for_each(fill, [(0, 3), (3, 7), (7, 10)])
    np.testing.assert_array_equal(out, [1, 1, 1, 4, 4, 4, 4, 8, 8, 8])

    def fail(piece):
        if piece == 2:
            raise ValueError("piece 2")

    with pytest.raises(ValueError, match="piece 2"):
        hostpool.for_each(fail, [1, 2, 3])


def test_generated_maps_do_not_depend_on_the_split(bundle_dir, monkeypatch):
    from edge_infer import WaferGenerator

    gen = WaferGenerator.load(bundle_dir, provider="cpu", threads=2)
    for cls, n in (("None", 700), ("Donut", 300)):
        split = gen.generate(cls, n, seed=4)
        course = gen.generate(cls, n, seed=4, mode="course")
        with monkeypatch.context() as m:
            m.setattr(hostpool, "parts_for", lambda rows, threads: 1)
            np.testing.assert_array_equal(gen.generate(cls, n, seed=4).maps, split.maps)
            np.testing.assert_array_equal(gen.generate(cls, n, seed=4, mode="course").maps, course.maps)
        with monkeypatch.context() as m:
            m.setattr(hostpool, "parts_for", lambda rows, threads: 3)
            np.testing.assert_array_equal(gen.generate(cls, n, seed=4).maps, split.maps)
