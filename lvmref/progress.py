"""Progress lines for long work (the demo's stages, the CLI's training runs).

One line per stage. On a terminal the line updates in place with the count, the rate and
the estimated time left; on anything else (a pipe, a log file, a test's captured output)
only the final line of each stage is written, so logs stay short. ``quiet`` writes
nothing. Progress goes to ``stderr`` by default, so a command's results on ``stdout`` can
be piped.
"""

from __future__ import annotations

import sys
import time

from .kernels.checks import check_flag, check_positive_int

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``'4.2 s'``, ``'42 s'``, ``'3 min 05 s'``, ``'1 h 02 min'`` (seconds >= 0, rounded;
    one decimal below 10 s)."""
    if max(float(seconds), 0.0) < 9.95:
        return f"{max(float(seconds), 0.0):.1f} s"
    s = int(round(max(float(seconds), 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class Progress:
    """A progress line for ``total`` steps of a stage.

    Parameters
    ----------
    label : str
        What the stage is, e.g. ``"[3/4] VAE on binarized digits"``.
    total : int
        Number of steps (>= 1).
    unit : str
        Name of a step, e.g. ``"epochs"``.
    stream : file-like, optional
        Where to write (default ``sys.stderr``).
    quiet : bool
        Write nothing.
    min_interval : float
        Seconds between redraws on a terminal.

    Examples
    --------
    >>> p = Progress("training", 3, "epochs", quiet=True)
    >>> for _ in range(3):
    ...     p.update(elbo=-20.5)
    >>> p.done()
    """

    def __init__(self, label, total, unit="steps", *, stream=None, quiet=False,
                 min_interval=0.1):
        self.label = str(label)
        self.total = check_positive_int(total, "total")
        self.unit = str(unit)
        self.stream = sys.stderr if stream is None else stream
        self.quiet = check_flag(quiet, "quiet")
        self.min_interval = float(min_interval)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.count = 0
        self.info = {}
        self.t0 = time.perf_counter()
        self._last = -float("inf")
        self._width = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def _line(self, final=False):
        el = self.elapsed
        rate = self.count / el if el > 0 else float("inf")
        parts = [self.label, f"{self.count}/{self.total} {self.unit}"]
        if final:
            parts.append(f"in {format_seconds(el)}")
        elif self.count:
            left = (self.total - self.count) / rate if rate > 0 else 0.0
            parts.append(f"{rate:.3g} {self.unit}/s, {format_seconds(left)} left")
        parts += [f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                  for k, v in self.info.items()]
        return "  ".join(parts)

    def update(self, n=1, **info):
        """Count ``n`` more steps; ``info`` (name -> value) is shown at the end of the line."""
        self.count += n
        self.info.update(info)
        if self.quiet or not self.tty:
            return
        now = time.perf_counter()
        if now - self._last >= self.min_interval:
            self._last = now
            line = self._line()
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = len(line)

    def done(self, summary=""):
        """Finish the stage: its final line (with the total time and ``summary``)."""
        if self.quiet:
            return
        line = self._line(final=True) + (f"  {summary}" if summary else "")
        self.stream.write(("\r" + line.ljust(self._width) if self.tty else line) + "\n")
        self.stream.flush()
