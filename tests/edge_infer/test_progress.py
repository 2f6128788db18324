"""The stderr progress bar: silent for short runs, a redrawn bar on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from edge_infer.progress import ProgressBar


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(bar: ProgressBar, clock: Clock, total: int, steps: int, seconds: float) -> None:
    for i in range(1, steps + 1):
        clock.t = seconds * i / steps
        bar(total * i // steps, total)


def test_a_short_run_prints_nothing():
    clock, out = Clock(), Tty()
    bar = ProgressBar("generate", stream=out, clock=clock)
    _drive(bar, clock, 1000, 10, seconds=0.5)
    assert out.getvalue() == ""


def test_terminal_bar_redraws_in_place_and_ends_its_line():
    clock, out = Clock(), Tty()
    bar = ProgressBar("generate", stream=out, clock=clock)
    _drive(bar, clock, 200_000, 100, seconds=20)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = [f for f in text.split("\r") if f]
    assert 20 <= len(frames) <= 100  # at most ~10 redraws a second
    assert frames[-1].startswith("generate [" + "#" * 24 + "] 200,000/200,000 maps (100%)")
    assert "maps/s" in frames[0] and "left" in frames[0]


def test_log_gets_occasional_lines_and_a_last_one():
    clock, out = Clock(), io.StringIO()  # not a terminal
    bar = ProgressBar("augment", stream=out, clock=clock)
    _drive(bar, clock, 6405, 640, seconds=29)
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 7  # every 5 s over 29 s, plus the final line
    assert all(ln.startswith("augment: ") and "\r" not in ln for ln in lines)
    assert lines[-1].startswith("augment: 6,405/6,405 maps (100%)")


def test_quiet_prints_nothing_even_for_long_runs():
    clock, out = Clock(), Tty()
    bar = ProgressBar("generate", stream=out, clock=clock, quiet=True)
    _drive(bar, clock, 10**6, 100, seconds=60)
    assert out.getvalue() == ""


def test_close_ends_an_unfinished_bar_line():
    clock, out = Clock(), Tty()
    bar = ProgressBar("reconstruct", stream=out, clock=clock)
    clock.t = 2.0
    bar(10, 100)
    bar.close()
    assert out.getvalue().endswith("\n") and "10/100" in out.getvalue()
