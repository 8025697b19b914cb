"""Progress of long work: a tqdm bar on a terminal; in a log file (stderr not a
terminal) a plain line every tenth of the way instead of thousands of
carriage-return updates."""

from __future__ import annotations

import sys
import time


class LineProgress:
    """tqdm's update/set_postfix/close, printing whole lines at 10 % steps."""

    def __init__(self, total: float, unit: str, desc: str = "", initial: float = 0.0, fmt: str = "{:g}"):
        self.total, self.unit, self.desc, self.n, self.fmt = float(total), unit, desc, float(initial), fmt
        self.next_report, self.t0, self.postfix = self._next(self.n), time.monotonic(), ""

    def _next(self, n: float) -> float:
        return (int(10 * n / self.total) + 1) * self.total / 10 if self.total > 0 else float("inf")

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.n >= self.next_report - 1e-12:
            self.next_report = self._next(self.n)
            done = f"{self.fmt.format(self.n)}/{self.fmt.format(self.total)} {self.unit}"
            print(f"{self.desc}{100 * self.n / self.total:3.0f}% {done} [{time.monotonic() - self.t0:.0f} s]"
                  f"{self.postfix}", file=sys.stderr, flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = "  " + " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass


def progress_bar(total, unit: str, enabled: bool = True, desc: str = "", initial: float = 0.0, fmt="{:g}", **tqdm_kw):
    """A tqdm bar on a terminal, :class:`LineProgress` otherwise, nothing if not `enabled`."""
    from tqdm import tqdm

    if enabled and not sys.stderr.isatty():
        return LineProgress(total, unit, desc, initial, fmt)
    return tqdm(total=total, initial=initial, unit=unit, desc=desc or None, disable=not enabled,
                dynamic_ncols=True, **tqdm_kw)
