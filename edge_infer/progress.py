"""Progress of long runs on stderr: a bar on a terminal, an occasional line in a log.

:class:`ProgressBar` is the ``progress(done, total)`` callback the streaming
API calls (:meth:`WaferGenerator.generate`, ``augment``, ``reconstruct``,
``generate_to_files``) after each block of maps. It stays silent for runs
shorter than ``delay`` seconds, so quick commands print nothing extra:

* stderr is a terminal: one line redrawn in place (at most 10 times a
  second) with a bar, the count, maps/s and the time left;
* otherwise (a pipe, a CI log): one plain line every ``every`` seconds, and a
  last one when done, so a log shows the run is alive without filling up;
* ``quiet=True``: nothing at all.

Pure standard library and no numpy: the CLI builds one before any model loads.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

#: A long run's first report comes after this many seconds.
DELAY_S = 1.0
#: Seconds between plain lines when stderr is not a terminal.
EVERY_S = 5.0
#: Seconds between redraws of the terminal bar.
REDRAW_S = 0.1
BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressBar:
    """``progress(done, total)`` for maps: a terminal bar, log lines, or nothing.

    ``what``: the verb shown, e.g. ``"generate"``. ``stream``: where to write
    (stderr); whether it is a terminal decides the form. ``clock``: a
    monotonic clock (tests pass a fake one).
    """

    def __init__(self, what: str, *, quiet: bool = False, stream: Optional[TextIO] = None,
                 delay: Optional[float] = None, every: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.delay = DELAY_S if delay is None else delay
        self.every = EVERY_S if every is None else every
        self.clock = clock
        self.live = not quiet and bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = clock()
        self._last = float("-inf")  # when we last wrote
        self._shown = False  # anything written yet
        self._finished = False

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or self._finished:
            return
        now = self.clock()
        elapsed = now - self._start
        finished = done >= total
        if not self._shown and elapsed < self.delay:
            if finished:
                self._finished = True
            return
        gap = REDRAW_S if self.live else self.every
        if not finished and now - self._last < gap:
            return
        self._last = now
        self._shown = True
        self._write(self._line(done, total, elapsed), finished)
        if finished:
            self._finished = True

    def _line(self, done: int, total: int, elapsed: float) -> str:
        total = max(total, 1)
        frac = min(done / total, 1.0)
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{done:,}/{total:,} maps ({100 * frac:.0f}%)"
        if rate > 0:
            text += f", {rate:,.0f} maps/s"
            if done < total:
                text += f", {_duration((total - done) / rate)} left"
            else:
                text += f", {_duration(elapsed)}"
        if self.live:
            filled = int(BAR_WIDTH * frac)
            return f"{self.what} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}"
        return f"{self.what}: {text}"

    def _write(self, line: str, finished: bool) -> None:
        if self.live:
            # \r + clear to the end of line: a shorter line leaves no tail behind.
            self.stream.write(f"\r{line}\x1b[K" + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a terminal bar's line if a run stopped before reaching its total."""
        if self.live and self._shown and not self._finished:
            self.stream.write("\n")
            self.stream.flush()
        self._finished = True
