"""The printed summary: fitted scaling exponents per (engine, quantity, sweep), with the reason under every slope
off its expectation, and the speed ratios read off the sweep."""
from collections import defaultdict

from .fit import MIN_POINTS_FOR_CI, OUTLIER_FACTOR, WORK_FACTOR, fit_slope
from .quantities import QUANTITIES

SWEEPS = ("width", "depth")
# The expected slope of log(time per sample) against log(|W|), per quantity and sweep, as (low, high): what the
# operation count predicts. |W| = depth * (width^2 + width), so in the width sweep a layer's P_l grows like |W|,
# and in the depth sweep (fixed width) it stays fixed.
EXPECTED = {
    "forward": {"width": (1, 1), "depth": (1, 1)},
    "gradient": {"width": (1, 1), "depth": (1, 1)},
    "finite_difference_gradient": {"width": (2, 2), "depth": (2, 2)},
    "per_sample_gradients": {"width": (1, 1), "depth": (1, 1)},
    "hvp": {"width": (1, 1), "depth": (1, 1)},
    # The block is P_l^2 entries: |W|^2 in the width sweep; fixed in the depth sweep, where only the backward
    # pass to layer 1 grows (like |W|), so between 0 (write-bound) and 1.
    "hessian_block": {"width": (2, 2), "depth": (0, 1)},
    "hessian": {"width": (2, 2), "depth": (2, 2)},
}


def expected_slope(quantity, sweep, default=2.0):
    """The steepest slope ``EXPECTED`` allows for ``quantity`` in ``sweep`` (``default`` when it lists none)."""
    return EXPECTED.get(quantity, {}).get(sweep, (None, default))[1]


def dtypes_text(points):
    """The dtype(s) of ``points``, for a header line: ``float64``, ``float32``, ``float32 and float64``."""
    found = sorted({p.get("dtype") for p in points if p.get("dtype")})
    return " and ".join(found) if found else "dtype not recorded"


# Slopes below expectation for a reason of the quantity itself.
BELOW_BECAUSE = {
    "finite_difference_gradient": "overhead per evaluation: 2|W| loss evaluations, each a small forward pass whose "
                                  "fixed cost outweighs its O(|W|) work at these sizes, so the time grows like |W|",
}
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
    low, high = EXPECTED.get(quantity, {}).get(sweep, (None, None))
    if low is None:
        return "-"
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def _ci_text(fit):
    return "n/a" if fit["ci_low"] is None else f"[{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]"


REASONS = {
    "overhead": "per-call overhead: the fixed cost of each call (checks, dispatch, allocation, tracing) still weighs at "
                "the small end of the fitted range, so the time grows slower than the work",
    "hardware": "better use of the hardware at size: larger arrays fill the cores and BLAS kernels better, so the "
                "time grows slower than the operation count",
    "cache": "cache effects: at the largest sizes the working set no longer fits in the CPU caches, so each "
             "operation waits on main memory",
    "noise": "noise: few points under a shared machine's load, so the step between neighbouring sizes weighs "
             "heavily in the fit",
    "finite_difference_gradient": "overhead per evaluation: 2|W| loss evaluations, each a small forward pass whose "
                                  "fixed cost outweighs its O(|W|) work at these sizes, so the time grows like |W|",
}


def _reason(fit, point_at):
    """``(key of REASONS, the figure behind it)`` for a slope off its expectation; ``None`` when it is not off."""
    low, high = EXPECTED.get(fit["quantity"], {}).get(fit["sweep"], (None, None))
    if low is None or low - OFF_BY <= fit["slope"] <= high + OFF_BY:
        return None
    if fit["ci_low"] is not None and fit["ci_low"] <= high and fit["ci_high"] >= low:
        return None  # within the noise of its own interval
    smallest, largest = point_at(fit["size_min"]), point_at(fit["size_max"])
    working = max(largest.get("output_bytes") or 0, 8 * largest["n_params"])
    if fit["slope"] < low and fit["quantity"] in REASONS:
        return fit["quantity"], None
    if fit["slope"] < low and (smallest["time_median_s"] < OVERHEAD_S or fit["size_max"] < 20 * fit["size_min"]):
        return "overhead", smallest["time_median_s"]
    if fit["slope"] < low:
        return "hardware", None
    if working > CACHE_BYTES:
        return "cache", working
    return "noise", None


def _note(key, figures):
    """The note under the table for one reason, with the range of the figures that back it."""
    text = REASONS[key]
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
    by_size = {p["n_params"]: p for p in points if p.get("status") == "ok" and p["engine"] == engine
               and p["quantity"] == quantity and p["sweep"] == sweep}
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
        f"{'quantity':<27} {'engine':<11} {'sweep':<6} {'slope':>6} {'expected':>9}  {'95% CI':<15} {'|W| fitted':<18} points",
    ]
    reasons = {}  # key -> figures, in first-seen order
    for fit in fits:
        span = f"{fit['size_min']:.0f}-{fit['size_max']:.0f}"
        found = _reason(fit, _point_finder(points, fit["engine"], fit["quantity"], fit["sweep"]))
        mark = ""
        if found:
            reasons.setdefault(found[0], []).append(found[1])
            mark = f" ({list(reasons).index(found[0]) + 1})"
        lines.append(f"{fit['quantity']:<27} {fit['engine']:<11} {fit['sweep']:<6} {fit['slope']:>6.2f} "
                     f"{_expected_text(fit['quantity'], fit['sweep']):>9}  {_ci_text(fit):<15} {span:<18} {fit['points']}{mark}")
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
    lines = [f"measured twice before the fit, the first time being more than {OUTLIER_FACTOR:g}x off its neighbours' "
             "trend (the fit uses the second; time per sample):"]
    for p in again:
        first = p["remeasured"]
        text = (f"  {p['quantity']} / {p['engine']}, {p['sweep']} sweep, |W|={p['n_params']}: "
                f"{_short(first['time_per_sample_s'])} ({first['off_by']:.1f}x off the trend, "
                f"{_short(first['trend_per_sample_s'])})")
        if first.get("failed"):
            text += f"; measuring it again failed ({first['failed']}), so the first time stays"
        else:
            text += f", then {_short(p['time_per_sample_s'])}"
        lines.append(text)
    return lines


def _largest_common(points, quantity, engine_a, engine_b, sweep="width"):
    """``(|W|, time_a / time_b)`` at the largest size both engines measured in ``sweep``."""
    times = defaultdict(dict)
    for p in points:
        if p.get("status") == "ok" and p["quantity"] == quantity and p["sweep"] == sweep:
            times[p["n_params"]][p["engine"]] = p["time_per_sample_s"]
    common = [size for size, by in times.items() if engine_a in by and engine_b in by]
    if not common:
        return None
    size = max(common)
    return size, times[size][engine_a] / times[size][engine_b]


def sweep_ratios(points):
    """Speed ratios read off this sweep at the largest common size: ``[(label, |W|, ratio)]``."""
    rows = []
    for other in ("jax", "backpack", "torch", "curvlinops"):
        found = _largest_common(points, "hessian_block", "manual", other)
        if found:
            rows.append((f"hessian_block: manual time / {other} time", *found))
    engines = sorted({p["engine"] for p in points if p["quantity"] == "hvp"})
    for engine in engines:
        hvp = {p["n_params"]: p["time_per_sample_s"] for p in points
               if p.get("status") == "ok" and p["engine"] == engine and p["quantity"] == "hvp" and p["sweep"] == "width"}
        grad = {p["n_params"]: p["time_per_sample_s"] for p in points
                if p.get("status") == "ok" and p["engine"] == engine and p["quantity"] == "gradient" and p["sweep"] == "width"}
        common = set(hvp) & set(grad)
        if common:
            size = max(common)
            rows.append((f"hvp time / gradient time ({engine})", size, hvp[size] / grad[size]))
    found = _largest_common(points, "hessian", "manual", "jax")
    if found:
        rows.append(("hessian: manual time / jax time", *found))
    return rows


def ratio_table(points):
    rows = sweep_ratios(points)
    lines = [f"speed ratios from this sweep ({dtypes_text(points)}, width sweep, largest |W| both measured, one point "
             "each, no target; < 1 means the first is faster)"]
    if not rows:
        lines.append("  (no pair measured)")
    for label, size, ratio in rows:
        lines.append(f"  {label:<46} |W|={size:<8} {ratio:8.3g}")
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
