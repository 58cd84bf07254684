"""PNG plots of a run (matplotlib, Agg): time per sample and peak memory against |W| on log-log axes, one panel
per quantity; engine by colour, sweep by line style, and one shared legend per figure in the spare panel.

Memory on the CPU is the resident-set growth of one call: whole pages only, so anything at or under one page (4 KiB)
is drawn on the labelled measurement floor as a hollow marker. On a GPU it is the libraries' own peak counters, whose
allocators hand out blocks of 512 bytes, the floor there. A point below its own series' previous size (memory the
process already held, such as XLA's buffer pool, was reused) is drawn as a cross, off the line.
"""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from xval import contract  # noqa: E402

from .plan import MEMORY_BOUND_FACTOR, QUANTITIES  # noqa: E402
from .report import series  # noqa: E402

TIME_PNG, MEMORY_PNG = "time_per_sample.png", "peak_memory.png"
COLORS = {"manual": "C0", "torch": "C1", "jax": "C2", "backpack": "C3", "curvlinops": "C4"}
STYLES = {"width": "-", "depth": "--", "channels": ":"}
BOUND_COLOR = "goldenrod"  # the memory target, apart from the grey slope guides
FLOOR_BYTES = 4096  # one page: the resolution of the resident-set measurement
# The floor and the memory title for each device: resident-set pages on the CPU, allocator blocks on a GPU (torch's
# caching allocator and cupy's pool both round every allocation up to 512 bytes).
FLOORS = {
    "cpu": (FLOOR_BYTES, "1 page (4 KiB)", "growth of the resident set during the call"),
    "cuda": (
        512,
        "one 512-byte block",
        "peak device memory above what was in use before it (each library's "
        "counter; jax's, where not raised: XLA's plan)",
    ),
}
FONT = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
}


def _reference_slopes(ax, sizes, values):
    """Grey lines of slope 1 and 2 through the geometric middle of the panel's data."""
    lo, hi = min(sizes), max(sizes)
    x0 = math.sqrt(lo * hi)
    y0 = math.exp(sum(math.log(v) for v in values) / len(values))
    for slope, style in ((1, ":"), (2, "-.")):
        ax.plot([lo, hi], [y0 * (x / x0) ** slope for x in (lo, hi)], style, color="0.55", lw=1.2)


def _sorted_positive(sizes, values, floor):
    pairs = sorted((s, v) for s, v in zip(sizes, values) if v is not None and (v > 0 or floor))
    return [s for s, _ in pairs], [v for _, v in pairs]


def _split_memory(xs, ys, floor_bytes=FLOOR_BYTES):
    """``(line points, floor points, dips)``: values at or under the floor go on it; a value under half of the
    series' previous kept value is a dip (memory reuse), kept off the line."""
    line, floor, dips = [], [], []
    for x, y in zip(xs, ys):
        if y <= floor_bytes:
            floor.append((x, floor_bytes))
        elif line and y < 0.5 * line[-1][1]:
            dips.append((x, y))
        else:
            line.append((x, y))
    return line, floor, dips


def _draw_series(ax, engine, sweep, xs, ys, floor=None):
    """One series; ``floor`` (an entry of ``FLOORS``) for a memory figure, ``None`` for a time figure."""
    color, style = COLORS.get(engine, "k"), STYLES.get(sweep, "-")
    if floor is None:
        ax.plot(xs, ys, style, marker="o", ms=4, lw=1.6, color=color)
        return list(zip(xs, ys))
    line, on_floor, dips = _split_memory(xs, ys, floor[0])
    if line:
        ax.plot(*zip(*line), style, marker="o", ms=4, lw=1.6, color=color)
    if on_floor:
        ax.plot(*zip(*on_floor), "o", ms=6, mfc="none", color=color)
    if dips:
        ax.plot(*zip(*dips), "x", ms=7, mew=1.6, color=color)
    return line + on_floor + dips


def _bounds(points):
    """``{(quantity, sweep): ([|W|...], [bytes...])}``: the memory target (``MEMORY_BOUND_FACTOR`` x ``P N n_L``
    entries) of the points that carry a bound, per series."""
    by_series = {}
    for p in points:
        if p.get("memory_bound_bytes"):
            by_series.setdefault((p["quantity"], p["sweep"]), {})[p["n_params"]] = (
                MEMORY_BOUND_FACTOR * p["memory_bound_bytes"]
            )
    return {key: (sorted(by), [by[s] for s in sorted(by)]) for key, by in by_series.items()}


def _panel(ax, data, quantity, ylabel, title, floor=None, bounds=None):
    drawn = []
    for (engine, q, sweep), (sizes, values) in sorted(data.items()):
        if q == quantity:
            xs, ys = _sorted_positive(sizes, values, floor=floor is not None)
            if xs:
                drawn += _draw_series(ax, engine, sweep, xs, ys, floor)
    for (q, sweep), (xs, ys) in sorted((bounds or {}).items()):
        if q == quantity and drawn:  # the bound is drawn, but does not stretch the axis beyond the data
            ax.plot(xs, ys, STYLES.get(sweep, "-"), color=BOUND_COLOR, lw=2.4, alpha=0.6)
    if drawn:
        _reference_slopes(ax, [s for s, _ in drawn], [v for _, v in drawn])
        low, high = min(v for _, v in drawn), max(v for _, v in drawn)
        bound = [v for (q, _), (_, ys) in (bounds or {}).items() if q == quantity for v in ys]
        if bound:  # the bound in view where it is within a few decades of the data
            high = max(high, min(max(bound), high * 100))
        ax.set_ylim(low / 3, high * 3)  # the reference lines may not stretch the axis past the data
    if floor is not None and (not drawn or floor[0] >= ax.get_ylim()[0]):  # a floor under every point is left out
        ax.axhline(floor[0], color="0.3", lw=0.8)
        ax.annotate(
            f"floor: {floor[1]}",
            (0.02, floor[0]),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(0, 3),
            fontsize=9,
            color="0.3",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # over less than a decade they overlap one another
    ax.set_title(title)
    ax.set_xlabel("|W| (parameters)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)


def _legend(ax, engines, sweeps, floor=None, bounded=False):
    """The figure's one legend, in the spare panel: engines by colour, sweeps by line style, the guides."""
    handles = [Line2D([], [], color=COLORS.get(e, "k"), marker="o", lw=2.5, label=e) for e in engines]
    handles += [Line2D([], [], color="k", ls=STYLES[s], lw=1.6, label=text) for s, text in sweeps]
    handles += [
        Line2D([], [], color="0.55", ls=":", lw=1.2, label="slope 1 (grows like |W|)"),
        Line2D([], [], color="0.55", ls="-.", lw=1.2, label="slope 2 (grows like |W|^2)"),
    ]
    if bounded:
        handles.append(
            Line2D(
                [],
                [],
                color=BOUND_COLOR,
                lw=2.4,
                alpha=0.6,
                label=f"target: {MEMORY_BOUND_FACTOR:g} x P N n_L entries (the diagonals)",
            )
        )
    if floor is not None:
        handles += [
            Line2D([], [], color="k", marker="o", mfc="none", ls="none", label=f"at or under the floor ({floor[1]})"),
            Line2D([], [], color="k", marker="x", ls="none", label="dip: reused memory already held"),
        ]
    ax.axis("off")
    ax.legend(handles=handles, loc="center", frameon=False, title="engine (colour), sweep (line)")


def _sweeps(points):
    """``[(sweep, "width sweep (depth 3)")]`` of the sweeps in ``points``."""
    out = {}
    for p in points:
        if p.get("status") == "ok" and p["sweep"] not in out:
            out[p["sweep"]] = {
                "width": f"width sweep (depth {p['depth']})",
                "depth": f"depth sweep (width {p['width']})",
                "channels": f"channels sweep (conv, {p['depth']} layers)",
            }.get(p["sweep"], p["sweep"])
    return sorted(out.items(), key=lambda item: list(STYLES).index(item[0]) if item[0] in STYLES else 99)


def _batches(points):
    return {p["quantity"]: p["batch"] for p in points if p.get("status") == "ok"}


def _figure(points, field, ylabel, title, path, floor=None):
    """One figure of ``field``: a memory figure with ``floor`` (an entry of ``FLOORS``), else a time figure."""
    data = series(points, field)
    quantities = [q for q in QUANTITIES if any(key[1] == q for key in data)]
    bounds = _bounds(points) if floor is not None else {}
    if not quantities:
        return None
    batches = _batches(points)
    with plt.rc_context(FONT):
        cols = 4
        rows = math.ceil((len(quantities) + 1) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows + 0.8), squeeze=False)
        for ax, quantity in zip(axes.flat, quantities):
            batch = batches.get(quantity, 1)
            if floor is not None:
                label, axis = f"{quantity}\n(one call on {batch} sample{'s' * (batch > 1)})", ylabel
            elif batch > 1:
                label, axis = f"{quantity}\n(call on {batch} samples, time / {batch})", "seconds per sample"
            else:
                label, axis = f"{quantity}\n(call on 1 sample)", "seconds per call"
            _panel(ax, data, quantity, axis, label, floor, bounds)
        spare = list(axes.flat)[len(quantities) :]
        engines = sorted({key[0] for key in data}, key=lambda e: list(COLORS).index(e) if e in COLORS else 99)
        _legend(spare[0], engines, _sweeps(points), floor, bounded=bool(bounds))
        for ax in spare[1:]:
            ax.axis("off")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return path


def write_plots(points, folder, subtitle="", device="cpu"):
    """Write the time and memory PNGs of a run on ``device`` into ``folder``; return the paths written."""
    os.makedirs(folder, exist_ok=True)
    floor = FLOORS["cuda" if device == "cuda" else "cpu"]
    where = f" ({subtitle})" if subtitle else ""
    batched = " and ".join(q for q in QUANTITIES if contract.quantity(q).batch)
    written = [
        _figure(
            points,
            "time_per_sample_s",
            None,
            f"Time vs |W|{where}: median of repeated calls, each on one sample, except {batched} (a batch; its "
            "time divided by the batch)",
            os.path.join(folder, TIME_PNG),
        ),
        _figure(
            points,
            "peak_bytes",
            "peak growth (bytes)",
            f"Peak memory of one call vs |W|{where}: {floor[2]}",
            os.path.join(folder, MEMORY_PNG),
            floor=floor,
        ),
    ]
    return [path for path in written if path]
