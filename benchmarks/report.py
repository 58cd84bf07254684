"""The printed summary: fitted scaling exponents per (engine, quantity, sweep), with the reason under every slope
off its expectation (the contract's ``Quantity.slopes``), the speed ratios read off the sweep, and the peak memory of
the quantities judged against ``P N n_L`` entries."""

from collections import defaultdict

from xval import contract

from .fit import MIN_POINTS_FOR_CI, OUTLIER_FACTOR, WORK_FACTOR, fit_slope
from .plan import MEMORY_BOUND_FACTOR, MEMORY_BOUND_MIN_BYTES, MEMORY_PEAK_MIN_BYTES, QUANTITIES

SWEEPS = ("width", "depth", "channels")


def expected_range(quantity, sweep):
    """``(low, high)``: the slope of log(time per sample) against log(|W|) that the operation count predicts for
    ``quantity`` in ``sweep`` (``Quantity.slopes``), ``(None, None)`` when the contract gives none."""
    return contract.quantity(quantity).slopes.get(sweep, (None, None))


def expected_slope(quantity, sweep, default=2.0):
    """The steepest slope the contract allows for ``quantity`` in ``sweep`` (``default`` when it gives none)."""
    high = expected_range(quantity, sweep)[1]
    return default if high is None else high


def dtypes_text(points):
    """The dtype(s) of ``points``, for a header line: ``float64``, ``float32``, ``float32 and float64``."""
    found = sorted({p.get("dtype") for p in points if p.get("dtype")})
    return " and ".join(found) if found else "dtype not recorded"


OFF_BY = 0.25  # a slope further than this from its expected range gets a note with the reason
OVERHEAD_S = 1e-3  # calls under this still carry a visible fixed per-call cost (checks, dispatch, allocation)
CACHE_BYTES = 32 * 1024 * 1024  # past this working set, data comes from main memory rather than the CPU caches


def series(points, field="time_per_sample_s"):
    """``{(engine, quantity, sweep): ([|W|...], [value...])}`` of the measured points."""
    out = defaultdict(lambda: ([], []))
    for point in points:
        if point.get("status") == "ok" and point.get(field) is not None:
            sizes, values = out[point["engine"], point["quantity"], point["sweep"]]
            sizes.append(point["n_params"])
            values.append(point[field])
    return dict(out)


def slopes(points, field="time_per_sample_s"):
    """``[{"engine", "quantity", "sweep", **fit_slope}]`` for every series with at least three points, fitted where
    the work dominates (``fit.work_part``); ``field="peak_bytes"`` fits the memory instead of the time."""
    rows = []
    for (engine, quantity, sweep), (sizes, values) in sorted(series(points, field).items()):
        fit = fit_slope(sizes, values, fraction=None)
        if fit is not None:
            rows.append({"engine": engine, "quantity": quantity, "sweep": sweep, **fit})
    return rows


def _expected_text(quantity, sweep):
    low, high = expected_range(quantity, sweep)
    if low is None:
        return "-"
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def _ci_text(fit):
    return "n/a" if fit["ci_low"] is None else f"[{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]"


REASONS = {
    "overhead": "per-call overhead: the fixed cost of each call (checks, dispatch, allocation, tracing) still weighs "
    "at the small end of the fitted range, so the time grows slower than the work",
    "hardware": "better use of the hardware at size: larger arrays fill the cores and BLAS kernels better, so the "
    "time grows slower than the operation count",
    "cache": "cache effects: at the largest sizes the working set no longer fits in the CPU caches, so each "
    "operation waits on main memory",
    "noise": "noise: few points under a shared machine's load, so the step between neighbouring sizes weighs "
    "heavily in the fit",
    "more work": "more work than the operation count: the time grows faster than the expected exponent by more than "
    "the noise of the fit allows, with a working set that fits the caches; the engine's algorithm does "
    "more than the quantity needs at these sizes (worth a profile)",
}
BELOW = "below: "  # a reason key for the quantity's own reason (``Quantity.below_because``)


def _reason(fit, point_at):
    """``(key of REASONS, the figure behind it)`` for a slope off its expectation; ``None`` when it is not off."""
    low, high = expected_range(fit["quantity"], fit["sweep"])
    if low is None or low - OFF_BY <= fit["slope"] <= high + OFF_BY:
        return None
    if fit["ci_low"] is not None and fit["ci_low"] <= high and fit["ci_high"] >= low:
        return None  # within the noise of its own interval
    smallest, largest = point_at(fit["size_min"]), point_at(fit["size_max"])
    working = max(largest.get("output_bytes") or 0, 8 * largest["n_params"])
    if fit["slope"] < low and contract.quantity(fit["quantity"]).below_because:
        return BELOW + fit["quantity"], None
    if fit["slope"] < low and (smallest["time_median_s"] < OVERHEAD_S or fit["size_max"] < 20 * fit["size_min"]):
        return "overhead", smallest["time_median_s"]
    if fit["slope"] < low:
        return "hardware", None
    if working > CACHE_BYTES:
        return "cache", working
    if fit["ci_low"] is None and fit["slope"] <= high + 2 * OFF_BY:
        return "noise", None
    return "more work", None


def _note(key, figures):
    """The note under the table for one reason, with the range of the figures that back it."""
    text = contract.quantity(key[len(BELOW) :]).below_because if key.startswith(BELOW) else REASONS[key]
    figures = [f for f in figures if f is not None]
    if figures and key == "overhead":
        text += f" (smallest fitted calls: {_short(min(figures))} to {_short(max(figures))})"
    if figures and key == "cache":
        text += f" (largest working sets: {min(figures) / 2**20:.0f} to {max(figures) / 2**20:.0f} MiB)"
    return text


def _short(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e6:.0f} us" if seconds < 1e-3 else f"{seconds * 1e3:.1f} ms"


def _point_finder(points, engine, quantity, sweep):
    by_size = {
        p["n_params"]: p
        for p in points
        if p.get("status") == "ok" and p["engine"] == engine and p["quantity"] == quantity and p["sweep"] == sweep
    }
    return lambda size: by_size[min(by_size, key=lambda s: abs(s - size))]


def slope_table(points):
    """The table of fitted slopes of log(time per sample) against log(|W|), with a note under it for every slope
    off its expectation, as text."""
    fits = slopes(points)
    order = {q: i for i, q in enumerate(QUANTITIES)}
    fits.sort(key=lambda f: (order.get(f["quantity"], 99), f["engine"], SWEEPS.index(f["sweep"])))
    lines = [
        f"fitted slope of log(time per sample) vs log(|W|), {dtypes_text(points)}, where the work dominates:",
        f"from the first size taking {WORK_FACTOR:g}x the series' smallest time on; 95% CI from {MIN_POINTS_FOR_CI} "
        "points up, else n/a",
        f"{'quantity':<27} {'engine':<11} {'sweep':<8} {'slope':>6} {'expected':>9}  {'95% CI':<15} "
        f"{'|W| fitted':<18} points",
    ]
    reasons = {}  # key -> figures, in first-seen order
    for fit in fits:
        span = f"{fit['size_min']:.0f}-{fit['size_max']:.0f}"
        found = _reason(fit, _point_finder(points, fit["engine"], fit["quantity"], fit["sweep"]))
        mark = ""
        if found:
            reasons.setdefault(found[0], []).append(found[1])
            mark = f" ({list(reasons).index(found[0]) + 1})"
        lines.append(
            f"{fit['quantity']:<27} {fit['engine']:<11} {fit['sweep']:<8} {fit['slope']:>6.2f} "
            f"{_expected_text(fit['quantity'], fit['sweep']):>9}  {_ci_text(fit):<15} {span:<18} "
            f"{fit['points']}{mark}"
        )
    if reasons:
        lines.append(f"slopes off their expectation by more than {OFF_BY:g}, and why:")
        lines += [f"  ({i}) {_note(key, figures)}" for i, (key, figures) in enumerate(reasons.items(), 1)]
    return "\n".join(lines + remeasured_lines(points))


def remeasured_lines(points):
    """Lines naming every point measured twice because its first time was far off its neighbours' trend, with both
    times (the fit and the ratios use the second)."""
    again = [p for p in points if p.get("status") == "ok" and isinstance(p.get("remeasured"), dict)]
    if not again:
        return []
    lines = [
        f"measured twice before the fit, the first time being more than {OUTLIER_FACTOR:g}x off its neighbours' "
        "trend (the fit uses the second; time per sample):"
    ]
    for p in again:
        first = p["remeasured"]
        text = (
            f"  {p['quantity']} / {p['engine']}, {p['sweep']} sweep, |W|={p['n_params']}: "
            f"{_short(first['time_per_sample_s'])} ({first['off_by']:.1f}x off the trend, "
            f"{_short(first['trend_per_sample_s'])})"
        )
        if first.get("failed"):
            text += f"; measuring it again failed ({first['failed']}), so the first time stays"
        else:
            text += f", then {_short(p['time_per_sample_s'])}"
        lines.append(text)
    return lines


def _times(points, quantity, engine, sweep):
    return {
        p["n_params"]: p["time_per_sample_s"]
        for p in points
        if p.get("status") == "ok" and p["quantity"] == quantity and p["engine"] == engine and p["sweep"] == sweep
    }


def sweep_ratios(points):
    """Speed ratios read off this sweep at the largest size both sides measured (the rows of
    ``ratios.SWEEP_ROWS``): ``[(label, |W|, ratio)]``."""
    from .ratios import SWEEP_ROWS

    rows = []
    for row in SWEEP_ROWS:
        ours = _times(points, row.quantity, row.engine, row.sweep)
        theirs = _times(points, row.other_quantity or row.quantity, row.other, row.sweep)
        common = set(ours) & set(theirs)
        if common:
            size = max(common)
            rows.append((row.label, size, ours[size] / theirs[size]))
    return rows


def ratio_table(points):
    rows = sweep_ratios(points)
    lines = [
        f"speed ratios from this sweep ({dtypes_text(points)}, width sweep, largest |W| both measured, one point "
        "each, no target; < 1 means the first is faster)"
    ]
    if not rows:
        lines.append("  (no pair measured)")
    for label, size, ratio in rows:
        lines.append(f"  {label:<52} |W|={size:<8} {ratio:8.3g}")
    return "\n".join(lines)


def format_rows(rows):
    """A list of dicts as an aligned text table (columns: the union of keys, in first-seen order)."""
    if not rows:
        return "  (no rows)"
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def text(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[text(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


# ---- peak memory against P N n_L entries ----------------------------------------------------------------------------
def memory_records(points):
    """Per (quantity, engine, sweep) of the points with a memory bound (``plan.MEMORY_BOUNDED``: ``P N n_L`` entries),
    the largest ``peak / bound`` over the points whose bound is at least ``plan.MEMORY_BOUND_MIN_BYTES`` (below it a
    call's fixed allocations and whole pages outweigh the bound) or whose peak is at least
    ``plan.MEMORY_PEAK_MIN_BYTES`` (beyond any fixed cost): ``[{"quantity", "engine", "sweep", "ratio",
    "n_params", "peak_bytes", "bound_bytes", "points", "met"}]``, ``ratio`` and ``met`` None when no point qualifies."""
    groups = defaultdict(list)
    for p in points:
        if p.get("status") == "ok" and p.get("memory_bound_bytes") and p.get("peak_bytes") is not None:
            groups[p["quantity"], p["engine"], p["sweep"]].append(p)
    order = {q: i for i, q in enumerate(QUANTITIES)}
    records = []
    for (quantity, engine, sweep), group in sorted(
        groups.items(), key=lambda item: (order.get(item[0][0], 99), item[0][1], item[0][2])
    ):
        judged = [
            p
            for p in group
            if p["memory_bound_bytes"] >= MEMORY_BOUND_MIN_BYTES or p["peak_bytes"] >= MEMORY_PEAK_MIN_BYTES
        ]
        record = {
            "quantity": quantity,
            "engine": engine,
            "sweep": sweep,
            "points": len(judged),
            "ratio": None,
            "met": None,
            "n_params": None,
            "peak_bytes": None,
            "bound_bytes": None,
        }
        if judged:
            worst = max(judged, key=lambda p: p["peak_bytes"] / p["memory_bound_bytes"])
            ratio = worst["peak_bytes"] / worst["memory_bound_bytes"]
            record.update(
                ratio=ratio,
                met=ratio <= MEMORY_BOUND_FACTOR,
                n_params=worst["n_params"],
                peak_bytes=worst["peak_bytes"],
                bound_bytes=worst["memory_bound_bytes"],
            )
        records.append(record)
    return records


def _mib(nbytes):
    return f"{nbytes / 2**20:.3g} MiB"


def memory_table(records, dtype="float64"):
    """The records of ``memory_records`` as text, with the target."""
    lines = [
        f"peak memory against P N n_L entries ({dtype}; every parameter's per-sample output rows, the most an "
        f"exact diagonal may hold), target <= {MEMORY_BOUND_FACTOR:g}x, judged where the bound is at least "
        f"{_mib(MEMORY_BOUND_MIN_BYTES)} or the peak at least {_mib(MEMORY_PEAK_MIN_BYTES)}:"
    ]
    if not records:
        return "\n".join(lines + ["  (no point measured)"])
    unjudged = [f"{r['quantity']} / {r['engine']} ({r['sweep']})" for r in records if r["ratio"] is None]
    for r in records:
        if r["ratio"] is None:
            continue
        head = f"  {r['quantity']:<17} {r['engine']:<11} {r['sweep']:<9}"
        verdict = "pass" if r["met"] else "FAIL"
        lines.append(
            f"{head} largest peak / bound {r['ratio']:6.3f} at |W|={r['n_params']:<8} (peak "
            f"{_mib(r['peak_bytes'])}, bound {_mib(r['bound_bytes'])}; {r['points']} points judged)  "
            f"{verdict}"
        )
    if unjudged:
        lines.append(
            f"  not judged (no point with a bound of at least {_mib(MEMORY_BOUND_MIN_BYTES)} or a peak of at "
            f"least {_mib(MEMORY_PEAK_MIN_BYTES)}): " + ", ".join(unjudged)
        )
    return "\n".join(lines)


def memory_verdict(records):
    """``(line or None, missed)``: how many memory targets were judged and which missed."""
    judged = [r for r in records if r["met"] is not None]
    if not judged:
        return None, False
    misses = [r for r in judged if not r["met"]]
    if not misses:
        return f"all {len(judged)} peak-memory targets judged are met (P N n_L entries)", False
    named = "; ".join(
        f"{r['quantity']} / {r['engine']}, {r['sweep']} sweep ({r['ratio']:.3g}x at |W|={r['n_params']})"
        for r in misses
    )
    return (
        f"{len(misses)} of {len(judged)} peak-memory targets miss (<= {MEMORY_BOUND_FACTOR:g}x P N n_L entries): "
        f"{named}",
        True,
    )
