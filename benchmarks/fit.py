"""Scaling exponents: the slope of log(time) against log(|W|), fitted by least squares where the work dominates
(``work_part``) or over the upper part of a sweep, with a 95% confidence interval from Student's t when there
are enough points for one to mean something (``MIN_POINTS_FOR_CI``)."""

import math

import numpy as np

# Two-sided 95% quantiles of Student's t, by degrees of freedom (beyond the table: the normal 1.96).
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    25: 2.060,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t_quantile_975(dof):
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (table, rounded down to a listed dof)."""
    if dof < 1:
        raise ValueError(f"need at least 1 degree of freedom, got {dof}")
    listed = [d for d in _T975 if d <= dof]
    return _T975[max(listed)] if dof <= 120 else 1.96


def upper_part(sizes, values, fraction=0.5, min_points=3):
    """The points (sorted by size) in the upper ``fraction`` of the sweep, at least ``min_points`` of them."""
    order = np.argsort(sizes)
    keep = max(min_points, math.ceil(fraction * len(order)))
    chosen = order[-keep:]
    return np.asarray(sizes, dtype=float)[chosen], np.asarray(values, dtype=float)[chosen]


# With 3 or 4 points the t quantile (12.7, 4.3) makes the interval span several units of slope: it says nothing.
MIN_POINTS_FOR_CI = 5
# A time at least this many times the series' smallest counts as work-dominated: the smallest call is mostly the
# fixed per-call cost (checks, dispatch, allocation), so from 2x on that cost is at most half of the time.
WORK_FACTOR = 2.0


def work_part(sizes, values, factor=WORK_FACTOR, min_points=3):
    """The points (sorted by size) whose value is at least ``factor`` times the smallest value, where the work
    grows past the per-call overhead; the largest ``min_points`` when fewer qualify."""
    order = np.argsort(sizes)
    sizes, values = np.asarray(sizes, dtype=float)[order], np.asarray(values, dtype=float)[order]
    keep = values >= factor * values.min()
    if keep.sum() < min_points:
        keep = np.arange(len(sizes)) >= len(sizes) - min_points
    else:
        keep = np.arange(len(sizes)) >= np.argmax(keep)  # from the first such point on, one contiguous range
    return sizes[keep], values[keep]


def fit_slope(sizes, values, fraction=0.5, min_points=3):
    """Fit ``log(value) = slope * log(size) + c`` over the upper part of the sweep.

    ``fraction=None`` fits the work-dominated part (``work_part``) instead of the upper ``fraction``.
    Returns ``{"slope", "ci_low", "ci_high", "stderr", "points", "size_min", "size_max"}``, or ``None`` when
    fewer than ``min_points`` positive points are given; ``ci_low``/``ci_high`` are ``None`` below
    ``MIN_POINTS_FOR_CI`` points.
    """
    sizes, values = np.asarray(sizes, dtype=float), np.asarray(values, dtype=float)
    good = (sizes > 0) & (values > 0) & np.isfinite(values)
    sizes, values = sizes[good], values[good]
    if len(sizes) < min_points or len(np.unique(sizes)) < 2:
        return None
    if fraction is None:
        x, y = work_part(sizes, values, min_points=min_points)
    else:
        x, y = upper_part(sizes, values, fraction, min_points)
    x, y = np.log(x), np.log(y)
    n = len(x)
    x_mean = x.mean()
    sxx = float(np.sum((x - x_mean) ** 2))
    slope = float(np.sum((x - x_mean) * (y - y.mean())) / sxx)
    residuals = y - (y.mean() + slope * (x - x_mean))
    dof = n - 2
    stderr = math.sqrt(float(np.sum(residuals**2)) / dof / sxx) if dof > 0 else math.inf
    half = t_quantile_975(dof) * stderr if dof > 0 else math.inf
    enough = n >= MIN_POINTS_FOR_CI
    return {
        "slope": slope,
        "ci_low": slope - half if enough else None,
        "ci_high": slope + half if enough else None,
        "stderr": stderr,
        "points": n,
        "size_min": float(np.exp(x.min())),
        "size_max": float(np.exp(x.max())),
    }


# A sweep point whose time is more than this factor off its neighbours' trend is measured again before any fit.
OUTLIER_FACTOR = 3.0


def outliers(sizes, values, max_slope, factor=OUTLIER_FACTOR):
    """The points of one series (``sizes`` distinct) that are off their neighbours' trend on log-log axes by more
    than ``factor``: ``[(index, trend value, off by)]`` (the trend nearest to the point), the furthest off first.

    An inner point is off when it is off every trend its neighbours give: the straight line through the two points
    around it, and those through the two points on either side, extended to it (so that a point next to a real jump,
    in line with its other side, is not off). The largest size may grow from its neighbour at most by the slope
    ``max_slope`` (what the operation count allows), and the smallest may not exceed the next size's value: only a
    value above those is off at the ends."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    x = [math.log(sizes[i]) for i in order]
    y = [math.log(values[i]) if values[i] > 0 else -math.inf for i in order]
    found = []
    if len(order) < 3 or not all(math.isfinite(v) for v in y):
        return found

    def line(a, b, k):
        return y[a] + (y[b] - y[a]) * (x[k] - x[a]) / (x[b] - x[a])

    last = len(order) - 1
    for k, index in enumerate(order):
        if k == 0:
            trends, high_only = [y[1]], True
        elif k == last:
            trends, high_only = [y[k - 1] + max_slope * (x[k] - x[k - 1])], True
        else:
            trends = (
                [line(k - 1, k + 1, k)]
                + ([line(k - 2, k - 1, k)] if k >= 2 else [])
                + ([line(k + 1, k + 2, k)] if k + 2 <= last else [])
            )
            high_only = False
        beyond = [y[k] - trend if high_only else abs(y[k] - trend) for trend in trends]
        nearest = min(range(len(trends)), key=lambda i: beyond[i])
        if beyond[nearest] > math.log(factor):
            found.append((index, math.exp(trends[nearest]), math.exp(beyond[nearest])))
    return sorted(found, key=lambda item: -item[2])
