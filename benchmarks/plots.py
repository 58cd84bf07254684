"""PNG plots of a run (matplotlib, Agg): time per sample and peak memory against |W| on log-log axes,
one panel per quantity, one line per engine (solid: width sweep, dashed: depth sweep)."""
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .quantities import QUANTITIES  # noqa: E402
from .report import series  # noqa: E402

TIME_PNG, MEMORY_PNG = "time_per_sample.png", "peak_memory.png"
COLORS = {"manual": "C0", "torch": "C1", "jax": "C2", "backpack": "C3", "curvlinops": "C4"}
STYLES = {"width": "-", "depth": "--"}


def _reference_slopes(ax, sizes, values):
    """Lines of slope 1 and 2 through the geometric middle of the panel's data."""
    lo, hi = min(sizes), max(sizes)
    x0 = math.sqrt(lo * hi)
    y0 = math.exp(sum(math.log(v) for v in values) / len(values))
    for slope, style in ((1, ":"), (2, "-.")):
        xs = [lo, hi]
        ax.plot(xs, [y0 * (x / x0) ** slope for x in xs], style, color="0.5", lw=1, label=f"slope {slope}")


def _panels(points, field, ylabel, title, path, references):
    data = series(points, field)
    quantities = [q for q in QUANTITIES if any(key[1] == q for key in data)]
    if not quantities:
        return None
    cols = min(4, len(quantities))
    rows = math.ceil(len(quantities) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, quantity in zip(axes.flat, quantities):
        all_sizes, all_values = [], []
        for (engine, q, sweep), (sizes, values) in sorted(data.items()):
            if q != quantity:
                continue
            order = sorted((i for i in range(len(sizes)) if values[i] > 0), key=sizes.__getitem__)
            xs, ys = [sizes[i] for i in order], [values[i] for i in order]
            if not xs:
                continue
            ax.plot(xs, ys, STYLES.get(sweep, "-"), marker="o", ms=3, color=COLORS.get(engine),
                    label=f"{engine} ({sweep})")
            all_sizes += xs
            all_values += ys
        positive = [(s, v) for s, v in zip(all_sizes, all_values) if v and v > 0]
        if references and positive:
            _reference_slopes(ax, [s for s, _ in positive], [v for _, v in positive])
            low, high = min(v for _, v in positive), max(v for _, v in positive)
            ax.set_ylim(low / 3, high * 3)  # the reference lines may not stretch the axis past the data
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(quantity)
        ax.set_xlabel("|W| (parameters)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(quantities):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(points, folder, subtitle=""):
    """Write the time and memory PNGs into ``folder``; return the paths written."""
    os.makedirs(folder, exist_ok=True)
    written = [
        _panels(points, "time_per_sample_s", "seconds per sample", f"time per sample vs |W| {subtitle}".strip(),
                os.path.join(folder, TIME_PNG), references=True),
        _panels(points, "peak_bytes", "peak bytes (growth)", f"peak memory vs |W| {subtitle}".strip(),
                os.path.join(folder, MEMORY_PNG), references=True),
    ]
    return [path for path in written if path]
