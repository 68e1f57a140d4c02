"""Progress a person can watch in a job's log: the rate and an ETA at least every 30 s or every 5% of
the work, whichever comes first, and one line when the work is done.

    progress = Progress("d=4 P=inf n=24", total=12000, unit="steps")
    for step in range(total):
        ...
        progress.update(step + 1, note=lambda: f"test MSE {loss:.3g}")  # note: built only when printed
    progress.finish()

`update` costs a clock read and two comparisons when nothing is due, so a training loop can call it
every step. A label of None makes a silent Progress (a library call that should not print).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

EVERY_S = 30.0
EVERY_FRACTION = 0.05


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


class Progress:
    def __init__(
        self,
        label: str | None,
        total: float,
        unit: str = "steps",
        done: float = 0,
        every_s: float = EVERY_S,
        every_fraction: float = EVERY_FRACTION,
        stream=None,
    ):
        """`done`: work already done before this process (a resumed checkpoint), not counted in the rate."""
        self.label, self.total, self.unit = label, max(float(total), 0.0), unit
        self.every_s, self.step = every_s, max(self.total * every_fraction, 1e-12)
        self.stream = stream
        self.started = self.last_time = time.monotonic()
        self.start_done = self.last_done = float(done)
        self.next_done = self.last_done + self.step
        self.finished = False

    def update(self, done: float, note: Callable[[], str] | str | None = None) -> None:
        now = time.monotonic()
        if done >= self.total or (done < self.next_done and now - self.last_time < self.every_s):
            return  # the end is finish()'s line
        self.last_time, self.last_done = now, float(done)
        self.next_done = float(done) + self.step
        elapsed = now - self.started
        rate = (done - self.start_done) / elapsed if elapsed > 0 else float("nan")
        left = (self.total - done) / rate if rate > 0 else float("nan")
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        eta = f", ETA {_duration(left)}" if left == left else ""
        text = note() if callable(note) else note
        self._print(
            f"{self.label}: {done:,.0f}/{self.total:,.0f} {self.unit}{share}, {_rate(rate)} {self.unit}/s{eta}"
            + (f"; {text}" if text else "")
        )

    def finish(self, note: Callable[[], str] | str | None = None) -> None:
        """One line saying the work is done, how long it took and at what rate (once)."""
        if self.finished:
            return
        self.finished = True
        elapsed = time.monotonic() - self.started
        done = self.total - self.start_done
        rate = f", {_rate(done / elapsed)} {self.unit}/s" if elapsed > 0 and done > 0 else ""
        text = note() if callable(note) else note
        self._print(
            f"{self.label}: done, {self.total:,.0f} {self.unit} in {_duration(elapsed)}{rate}"
            + (f"; {text}" if text else "")
        )

    def _print(self, line: str) -> None:
        if self.label is not None:
            print(line, file=self.stream or sys.stderr, flush=True)
