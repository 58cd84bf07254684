"""Progress of a long phase on stderr: a bar that ticks every second (done of total, elapsed, what is left), with the
time left learned from the work done so far, never from a fixed guess.

- ``SeriesEstimate``: the sweep's estimate. Each planned group (one sweep, size and quantity, timed on its engines)
  belongs to a series (sweep, quantity); a group's seconds per engine are predicted from the groups of its series
  done so far: the last one, grown to the new size by the series' own growth between its last two groups (a slope
  on log-log axes, kept between 0 and the slope the operation count predicts). A series with nothing done yet
  borrows the same quantity's other sweep; while a quantity has nothing done at all, there is no estimate yet.
- ``RateEstimate``: the ratio rows' estimate: seconds per unit of work measured so far (a unit: the row's nominal
  seconds) times the units left.
- ``Progress``: the bar, refreshed by a ticker thread every ``interval`` seconds, so that it moves (elapsed time,
  the time left counting down) within long steps too.
"""

import math
import sys
import threading
import time

from tqdm import tqdm


def clock_text(seconds):
    """``0:45``, ``12:03``, ``1:02:03``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class SeriesEstimate:
    """What is left of a plan of groups, learned from the groups done.

    ``groups``: ``[(series key, size, engines)]`` in plan order, ``engines`` the number of points the group measures
    (0: nothing to do, e.g. done by an earlier run); ``exponent(key)``: the largest slope of log(seconds) on log(size)
    the series may grow by (the operation count's)."""

    def __init__(self, groups, exponent):
        self.groups = list(groups)
        self.exponent = exponent
        self.seen = {}  # series key -> [(size, seconds per engine)] in the order done
        self.finished = set()

    def learn(self, index, seconds):
        """Group ``index`` took ``seconds``."""
        key, size, engines = self.groups[index]
        self.finished.add(index)
        if engines > 0:
            self.seen.setdefault(key, []).append((size, seconds / engines))

    def _series(self, key):
        if key in self.seen:
            return self.seen[key]
        quantity = key[-1]
        return next((done for other, done in self.seen.items() if other[-1] == quantity), None)

    def predict(self, index):
        """Seconds for group ``index``, or ``None`` while its quantity has nothing done."""
        key, size, engines = self.groups[index]
        if engines == 0:
            return 0.0
        done = self._series(key)
        if not done:
            return None
        last_size, last = done[-1]
        slope = 0.0
        if len(done) > 1 and done[-2][0] != last_size and done[-2][1] > 0 and last > 0:
            before_size, before = done[-2]
            slope = math.log(last / before) / math.log(last_size / before_size)
            slope = min(max(slope, 0.0), self.exponent(key))
        return engines * last * (size / last_size) ** slope if size > 0 and last_size > 0 else engines * last

    def left(self, current=None, current_s=0.0):
        """Seconds left after the groups done, with ``current`` (an index) under way for ``current_s``; ``None`` while
        a group left has no estimate."""
        total = 0.0
        for index in range(len(self.groups)):
            if index in self.finished:
                continue
            seconds = self.predict(index)
            if seconds is None:
                return None
            total += max(0.0, seconds - current_s) if index == current else seconds
        return total


class RateEstimate:
    """What is left of a list of steps of known relative size (``units``): seconds per unit so far x units left."""

    def __init__(self, units):
        self.units = list(units)
        self.seconds = {}

    def learn(self, index, seconds):
        self.seconds[index] = seconds

    def left(self, current=None, current_s=0.0):
        done_units = sum(self.units[i] for i in self.seconds)
        if not done_units:
            return None
        rate = sum(self.seconds.values()) / done_units
        total = 0.0
        for index, units in enumerate(self.units):
            if index not in self.seconds:
                total += max(0.0, rate * units - current_s) if index == current else rate * units
        return total


class Progress:
    """A bar on ``file``: ``desc: 40%|####  | 37/92 points, 00:12 elapsed, about 0:45 left, <label>``, redrawn every
    ``interval`` seconds by a ticker thread. ``estimate`` has ``learn(index, seconds)`` and ``left(current,
    current_s)``; ``begin(index)`` and ``end(index)`` bracket each step, ``advance(n, label)`` counts finished items."""

    def __init__(
        self, desc, total, estimate, unit="points", file=None, interval=1.0, clock=time.monotonic, disable=False
    ):
        self.estimate, self.clock, self.interval = estimate, clock, interval
        self.label, self.current, self.started_at = "", None, None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.bar = tqdm(
            total=total,
            desc=desc,
            file=file or sys.stderr,
            disable=disable,
            mininterval=0.5,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + unit + ", {elapsed} elapsed{postfix}",
        )
        self._ticker = None
        if not disable and interval:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def text(self):
        """The part after the elapsed time: the estimate of what is left (or that it is still being learned)."""
        with self._lock:
            under_way = self.clock() - self.started_at if self.started_at is not None else 0.0
            left = self.estimate.left(self.current, under_way)
            label = self.label
        when = "estimating the time left" if left is None else f"about {clock_text(left)} left"
        return f"{when}, {label}" if label else when

    def _tick(self):
        while not self._stop.wait(self.interval):
            self.bar.set_postfix_str(self.text())  # refreshes the bar: elapsed and the time left move

    def begin(self, index, label=None):
        with self._lock:
            self.current, self.started_at = index, self.clock()
            if label is not None:
                self.label = label
        self.bar.set_postfix_str(self.text())

    def end(self, index):
        with self._lock:
            if self.started_at is not None:
                self.estimate.learn(index, self.clock() - self.started_at)
            self.current, self.started_at = None, None

    def advance(self, n=1, label=None):
        if label is not None:
            with self._lock:
                self.label = label
        self.bar.update(n)
        self.bar.set_postfix_str(self.text())

    def add(self, n):
        """``n`` more items than planned (re-measured points)."""
        self.bar.total += n
        self.bar.refresh()

    def close(self):
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
