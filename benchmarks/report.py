"""The printed summary: fitted scaling exponents per (engine, quantity) and the Hessian speed ratios."""
from collections import defaultdict

from .fit import fit_slope
from .quantities import QUANTITIES

EXPECTED = {"forward": "1", "gradient": "1", "finite_difference_gradient": "2", "per_sample_gradients": "1",
            "hvp": "1", "hessian_block": "1 (in P_l^2)", "hessian": "2"}
SWEEPS = ("width", "depth")


def series(points, field="time_per_sample_s"):
    """``{(engine, quantity, sweep): ([|W|...], [value...])}`` of the measured points."""
    out = defaultdict(lambda: ([], []))
    for point in points:
        if point.get("status") == "ok" and point.get(field) is not None:
            sizes, values = out[point["engine"], point["quantity"], point["sweep"]]
            sizes.append(point["n_params"])
            values.append(point[field])
    return dict(out)


def slopes(points, fraction=0.5, field="time_per_sample_s"):
    """``[{"engine", "quantity", "sweep", **fit_slope}]`` for every series with at least three points
    (``field="peak_bytes"`` fits the memory instead of the time)."""
    rows = []
    for (engine, quantity, sweep), (sizes, values) in sorted(series(points, field).items()):
        fit = fit_slope(sizes, values, fraction=fraction)
        if fit is not None:
            rows.append({"engine": engine, "quantity": quantity, "sweep": sweep, **fit})
    return rows


def _cell(fit):
    if fit is None:
        return "-"
    return f"{fit['slope']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]"


def slope_table(points, fraction=0.5):
    """The table of fitted slopes of log(time per sample) against log(|W|), as text."""
    fits = {(r["quantity"], r["engine"], r["sweep"]): r for r in slopes(points, fraction)}
    keys = sorted({(q, e) for q, e, _ in fits}, key=lambda k: (QUANTITIES.index(k[0]) if k[0] in QUANTITIES else 99, k[1]))
    lines = [
        "fitted slope of log(time per sample) vs log(|W|), upper half of each sweep, 95% CI",
        f"{'quantity':<28} {'engine':<11} {'width sweep':<22} {'|W| range (width)':<19} {'depth sweep':<22} {'expected':<12}",
    ]
    for quantity, engine in keys:
        width, depth = fits.get((quantity, engine, "width")), fits.get((quantity, engine, "depth"))
        span = f"{width['size_min']:.0f}-{width['size_max']:.0f}" if width else "-"
        lines.append(f"{quantity:<28} {engine:<11} {_cell(width):<22} {span:<19} {_cell(depth):<22} {EXPECTED.get(quantity, ''):<12}")
    return "\n".join(lines)


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
    lines = ["speed ratios from this sweep (width sweep, largest |W| both measured; < 1 means the first is faster)"]
    if not rows:
        lines.append("  (no pair measured)")
    for label, size, ratio in rows:
        lines.append(f"  {label:<46} |W|={size:<8} {ratio:8.3g}")
    return "\n".join(lines)


def hessian_ratio_rows(quick=False):
    """The rows of ``benchmarks.hessian_ratios.hessian_ratios`` (issue 3), or ``(None, reason)``."""
    try:
        from . import hessian_ratios as module
    except ImportError as exc:
        return None, f"benchmarks/hessian_ratios.py is not available yet ({exc})"
    try:
        return module.hessian_ratios(quick=quick), None
    except Exception as exc:  # noqa: BLE001 - the sweep's own results still print
        return None, f"hessian_ratios failed: {type(exc).__name__}: {exc}"


def format_hessian_ratios(rows):
    """The rows in ``hessian_ratios``' own table format when it has one, else as a generic table."""
    try:
        from .hessian_ratios import format_table
    except ImportError:
        return format_rows(rows)
    return format_table(rows)


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
