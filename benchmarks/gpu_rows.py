"""The GPU rows: targets that only a GPU run (``--device cuda``) measures, read from its width sweep (depth 3,
tanh, one sample, float64 unless the run says otherwise).

- the same-layer block at widths 128 and 192: ``manual`` against ``jax.jit(jax.hessian)`` and
  ``torch.func.hessian``, time and peak device memory; ``manual`` at most 1.0x jax's time, its peak at most 1.05x
  the block's own bytes (the block is the output: a peak near 1.0x means nothing else of that size was held);
- gradient and hvp at ``|W| >= 1e6`` (width 1024, ``|W|`` = 3.1e6): ``manual`` within 1.5x of ``jax.jit``.

A point that ran out of device memory is shown as such; a row whose points are missing says why. jax's peaks are
marked "(XLA plan)" where its peak counter, which cannot be reset, was not raised by the measured call: the figure is
then the memory XLA planned for it (temporaries plus output). Each engine is
timed on its own (median of the sweep's repeats, device work waited for), not in turn as the CPU ratio rows are: a
GPU's caching allocators hand back warm memory, so no contender meets the page faults that rotation evens out on
the CPU.
"""

from dataclasses import dataclass

from xval import contract

ENGINES = ("manual", "jax", "torch")


@dataclass(frozen=True)
class GpuRow:
    """``quantity`` at ``width`` (depth 3): ``manual``'s time at most ``time_target`` x jax's, and for a block its
    peak at most ``peak_target`` x the block's bytes; ``label`` names it in the table, ``peers`` says what jax and
    torch run for it."""

    quantity: str
    width: int
    time_target: float
    peak_target: float = None
    label: str = ""
    peers: str = ""

    @property
    def name(self):
        return f"{self.label or self.quantity}, width {self.width}"


_BLOCK_PEERS = "jax.jit(jax.hessian), torch.func.hessian"
ROWS = (
    GpuRow("hessian_block", 128, 1.0, 1.05, "same-layer block", _BLOCK_PEERS),
    GpuRow("hessian_block", 192, 1.0, 1.05, "same-layer block", _BLOCK_PEERS),
    GpuRow("gradient", 1024, 1.5, peers="jax.jit(jax.grad), torch autograd"),
    GpuRow("hvp", 1024, 1.5, peers="jax.jit(jvp of grad), torch.func jvp of grad"),
)


def _points(points, row):
    """The width-sweep points of ``row``'s quantity and width, by engine."""
    return {
        p["engine"]: p
        for p in points
        if p.get("sweep") == "width"
        and p.get("quantity") == row.quantity
        and p.get("width") == row.width
        and p.get("depth") == 3
    }


def _state(point):
    """``ok``, ``out of memory`` (the device ran out), ``refused (memory guard)`` (refused before allocating),
    ``failed`` or ``skipped``."""
    reason = point.get("reason", "")
    if point["status"] == "failed" and reason.startswith("out of memory"):
        return "out of memory"
    if point["status"] == "failed" and reason.startswith("refused by the memory guard"):
        return "refused (memory guard)"
    return point["status"]


def measure(points, row):
    """A record of ``row`` read from ``points``: each engine's state (see ``_state``, or ``not measured``), time and
    peak; the ratios and whether each target is met (``None``: unknown)."""
    found = _points(points, row)
    engines = {}
    for name in ENGINES:
        point = found.get(name)
        if point is None:
            engines[name] = {"state": "not measured"}
            continue
        engines[name] = {
            "state": _state(point),
            "time_s": point.get("time_median_s"),
            "peak_bytes": point.get("peak_bytes"),
            "planned": point.get("memory_method", "").startswith("jax compiled memory_analysis"),
            "reason": point.get("reason", ""),
        }
    any_point = next(iter(found.values()), {})
    record = {
        "row": row.name,
        "quantity": row.quantity,
        "width": row.width,
        "n_params": any_point.get("n_params"),
        "output_bytes": any_point.get("output_bytes"),
        "engines": engines,
        "time_target": row.time_target,
        "peak_target": row.peak_target,
    }
    manual, jax = engines["manual"], engines["jax"]
    both = manual["state"] == jax["state"] == "ok" and manual["time_s"] and jax["time_s"]
    record["time_ratio"] = manual["time_s"] / jax["time_s"] if both else None
    record["time_met"] = None if record["time_ratio"] is None else record["time_ratio"] <= row.time_target
    record["peak_ratio"] = record["peak_met"] = None
    if row.peak_target is not None and manual["state"] == "ok" and manual["peak_bytes"] and record["output_bytes"]:
        record["peak_ratio"] = manual["peak_bytes"] / record["output_bytes"]
        record["peak_met"] = record["peak_ratio"] <= row.peak_target
    return record


def records(points, device):
    """Every GPU row's record from a run's points; ``[]`` unless the run measured on ``cuda``."""
    return [measure(points, row) for row in ROWS] if device == "cuda" else []


def _time(seconds):
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def cell(engine):
    """An engine's figures for a table: time and peak, or why there are none."""
    state = engine["state"]
    if state != "ok":
        return state
    text = _time(engine["time_s"])
    if engine.get("peak_bytes") is None:
        return text
    # jax's peak counter cannot be reset: a call that does not raise it gets the memory XLA planned for it.
    return text + f", {engine['peak_bytes'] / 1e9:.3g} GB" + (" (XLA plan)" if engine.get("planned") else "")


def _verdict(met):
    return {True: "pass", False: "FAIL", None: "n/a"}[met]


def verdicts(record):
    """``(time text, peak text)``: each ratio with its target and whether it is met (the peak text is empty for a row
    without a peak target)."""
    ratio = "n/a" if record["time_ratio"] is None else f"{record['time_ratio']:.3g}"
    if record["time_ratio"] is None and record["engines"]["jax"]["state"] != "ok":
        ratio = f"jax {record['engines']['jax']['state']}"
    time_text = f"{ratio} (<= {record['time_target']:g}: {_verdict(record['time_met'])})"
    if record["peak_target"] is None:
        return time_text, ""
    peak = "n/a" if record["peak_ratio"] is None else f"{record['peak_ratio']:.3g}"
    return time_text, f"{peak} (<= {record['peak_target']:g}: {_verdict(record['peak_met'])})"


def format_table(rows):
    """The GPU rows as a fixed-width table: each engine's time (and peak), manual / jax against its target, and
    manual's peak over the block's bytes."""
    head = (
        f"  {'row':<27} {'|W| (block GB)':<16} {'manual':<20} {'jax':<31} {'torch':<20} {'manual/jax':<31} "
        "manual peak/block"
    )
    lines = [head]
    for r in rows:
        size = f"{r['n_params']:,}" if r["n_params"] else "?"
        if contract.quantity(r["quantity"]).dense and r["output_bytes"]:
            size += f" ({r['output_bytes'] / 1e9:.3g})"
        time_cell, peak_cell = verdicts(r)
        cells = [cell(r["engines"][name]) for name in ENGINES]
        lines.append(
            f"  {r['row']:<27} {size:<16} {cells[0]:<20} {cells[1]:<31} {cells[2]:<20} {time_cell:<31} {peak_cell}"
        )
    peers = dict.fromkeys((row.label or row.quantity, row.peers) for row in ROWS)
    lines.append("  peers: " + "; ".join(f"{label}: {words}" for label, words in peers))
    return "\n".join(lines)
