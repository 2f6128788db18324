"""Progress on stderr (edge_infer.commands._common.Progress): silent for short runs, a bar on a terminal,
plain lines in a log, nothing with --quiet."""

from __future__ import annotations

import io
import re
import sys

import pytest

from edge_infer.commands import _common
from edge_infer.commands._common import Progress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    """Stands in for the ``time`` module Progress reads: ``monotonic()`` is whatever the test says."""

    t = 0.0

    @classmethod
    def monotonic(cls) -> float:
        return cls.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def stderr(monkeypatch):
    """``(use(stream), clock)``: Progress writes to ``stream`` and reads the clock."""
    Clock.t = 0.0
    monkeypatch.setattr(_common, "time", Clock)
    # a plain wide terminal, whatever the test run's own (rich reads these when the bar starts)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES"):
        monkeypatch.delenv(name, raising=False)

    def use(stream: io.StringIO) -> io.StringIO:
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    return use, Clock


def _drive(bar: Progress, clock: type[Clock], total: int, steps: int, seconds: float) -> None:
    for i in range(1, steps + 1):
        clock.t = seconds * i / steps
        bar(total * i // steps, total)


def test_a_short_run_prints_nothing(stderr):
    use, clock = stderr
    for stream in (Tty(), io.StringIO()):
        out = use(stream)
        bar = Progress("generate")
        _drive(bar, clock, 1000, 10, seconds=0.5)
        bar.close()
        assert out.getvalue() == ""


def test_terminal_bar_shows_the_count_and_ends_its_line(stderr):
    use, clock = stderr
    out = use(Tty())
    bar = Progress("generate")
    _drive(bar, clock, 200_000, 100, seconds=20)
    bar.close()
    text = ANSI.sub("", out.getvalue())
    assert text.endswith("\n") and text.count("\n") == 1  # one line, redrawn in place
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("generate") and "200000/200000 maps" in last


def test_log_gets_occasional_lines_and_a_last_one(stderr):
    use, clock = stderr
    out = use(io.StringIO())  # not a terminal
    bar = Progress("augment")
    _drive(bar, clock, 6405, 640, seconds=29)
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 7  # every 5 s over 29 s, plus the final line
    assert all(ln.startswith("augment: ") and "\r" not in ln and "\x1b" not in ln for ln in lines)
    assert lines[-1].startswith("augment: 6,405/6,405 maps (100%)") and lines[-1].endswith("maps/s")


def test_quiet_prints_nothing_even_for_long_runs(stderr):
    use, clock = stderr
    for stream in (Tty(), io.StringIO()):
        out = use(stream)
        bar = Progress("generate", quiet=True)
        _drive(bar, clock, 10**6, 100, seconds=60)
        bar.close()
        assert out.getvalue() == ""


def test_close_ends_an_unfinished_bar_line(stderr):
    use, clock = stderr
    out = use(Tty())
    bar = Progress("reconstruct")
    clock.t = 2.0
    bar(10, 100)
    bar.close()
    text = ANSI.sub("", out.getvalue())
    assert text.endswith("\n") and "10/100" in text
