"""The speed and memory rows of the Hessian engine (issue 3), measured on this machine in one run.

Every row uses a depth-5 sigmoid network of equal widths, one sample, float64, mse loss:

- width 64, same-layer block of layer 1: ``manual.hessian_block`` against ``jax.jit(jax.hessian)`` of that layer,
  ``torch.func.hessian`` of that layer, and BackPACK's HMP times the identity (when ``backpack`` imports);
- width 128, the same block: against the time numpy takes to write an array of the block's size (the faster of
  ``np.multiply.outer(u, u)`` and ``u[:, None] * u`` for a vector ``u`` of the block's side), and its peak memory
  (tracemalloc, which sees numpy's allocations) against the block's bytes;
- ``manual.hvp`` against one ``manual.gradient`` at |W| >= 1e5, and how its time grows with |W|;
- the full Hessian at |W| ~ 5,000: ``manual.hessian`` against ``jax.jit(jax.hessian)``.

Times are medians of at least 5 repeats after a warm-up call (which includes jit compilation). BLAS and OpenMP
pools are pinned with threadpoolctl (and torch's intra-op threads set to match); XLA keeps its own pool, which
only favours jax. Each result is checked against ``manual`` before it is timed.

Run: ``python -m benchmarks.hessian_ratios [--quick] [--threads N]``.
"""
import argparse
import gc
import os
import platform
import tracemalloc

import numpy as np

import manual

from . import peers, timing

DEPTH = 5
LAYER = 1


def sigmoid_problem(width, depth=DEPTH, seed=0):
    """A depth-``depth`` sigmoid network of equal widths, one sample, float64, mse."""
    net = manual.Network.random([width] * (depth + 1), "sigmoid", "mse", seed=seed)
    rng = np.random.default_rng(seed + 1)
    return net, rng.standard_normal((1, width)), rng.standard_normal((1, width))


def median_time(call, repeats):
    """Median seconds of ``call()`` over ``repeats`` repeats, after one warm-up run (compilation included there)."""
    return timing.time_call(call, repeats=repeats)["median"]


def _check(actual, expected, what, rtol=1e-10):
    from xval.compare import relative_error

    error = relative_error(actual, expected)
    if not error <= rtol:
        raise AssertionError(f"{what} disagrees with manual before timing: relative error {error:.3g}")


def backpack_available():
    return peers.available("backpack") is None


# ---- the rows -----------------------------------------------------------------------------------
def _row(name, ours, theirs, ours_s, theirs_s, target, passed, ratio, **extra):
    return dict(row=name, ours=ours, theirs=theirs, ours_s=ours_s, theirs_s=theirs_s, ratio=ratio, target=target, passed=bool(passed), **extra)


def block_rows(repeats):
    """Width 64, block of layer 1: manual against jax, torch and BackPACK (speed-ups, ``theirs / ours``).

    The peers are the suite's staged calls (``jax_ref.stage_hessian_block``: ``jax.jit(jax.hessian)`` with respect
    to the layer; ``torch_ref.stage_hessian_block``: ``torch.func.hessian`` of it; ``benchmarks.peers``' BackPACK
    HMP times the identity, whose weight-weight and bias-bias parts are all HMP gives), set up before timing.
    """
    import jax_ref
    import torch_ref

    net, X, Y = sigmoid_problem(64)
    ours_call = lambda: manual.hessian_block(net, X, Y, LAYER, LAYER)  # noqa: E731
    expected = ours_call()
    ours_s = median_time(ours_call, repeats)
    rows = []
    candidates = [
        ("jax.jit(jax.hessian) of layer 1", lambda: (jax_ref.stage_hessian_block(net, X, Y, LAYER, LAYER), jax_ref.to_numpy, None), 3.0),
        ("torch.func.hessian of layer 1", lambda: (torch_ref.stage_hessian_block(net, X, Y, LAYER, LAYER), torch_ref.to_numpy, None), 8.0),
    ]
    if backpack_available():
        candidates.append(("BackPACK HMP(identity), W and b parts", lambda: peers.prepare("backpack", net, X, Y, LAYER), 3.0))
    for name, build, target in candidates:
        call, fetch, covered = build()
        result = fetch(call())
        if covered is None:
            _check(result, expected, name)
        else:
            _check(result[covered], expected[covered], name)
        theirs_s = median_time(call, repeats)
        ratio = theirs_s / ours_s
        rows.append(_row(f"block width 64 (side {expected.shape[0]})", "manual.hessian_block", name, ours_s, theirs_s,
                         f"speed-up >= {target:g}x", ratio >= target, ratio))
    if not backpack_available():
        rows.append(_row("block width 64", "manual.hessian_block", "BackPACK HMP", ours_s, None, "speed-up >= 3x", False, None,
                         note=f"backpack not importable: {peers.INSTALL}"))
    return rows


def write_rows(repeats):
    """Width 128, block of layer 1: time against writing an array of its size, peak memory against its bytes."""
    net, X, Y = sigmoid_problem(128)
    side = net.layer_param_counts[LAYER]
    block_bytes = side * side * 8
    u = np.random.default_rng(0).standard_normal(side)
    # The faster of two ways numpy writes a fresh (side, side) array of products (the stricter baseline), timed
    # in turn with the block so that all three meet the same memory state.
    ours_s, outer_s, broadcast_s = (stats["median"] for stats in timing.time_calls(
        [lambda: manual.hessian_block(net, X, Y, LAYER, LAYER), lambda: np.multiply.outer(u, u), lambda: u[:, None] * u[None, :]],
        repeats=repeats,
    ))
    write_s = min(outer_s, broadcast_s)
    gc.collect()
    tracemalloc.start()
    block = manual.hessian_block(net, X, Y, LAYER, LAYER)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del block
    ratio = ours_s / write_s
    return [
        _row(f"block width 128 (side {side}), time", "manual.hessian_block", f"numpy writing {side}^2 float64 (outer)",
             ours_s, write_s, "ratio <= 1.5", ratio <= 1.5, ratio),
        _row(f"block width 128 (side {side}), peak memory", "manual.hessian_block peak (tracemalloc)", "block bytes",
             None, None, "ratio <= 1.2", peak / block_bytes <= 1.2, peak / block_bytes, peak_bytes=peak, block_bytes=block_bytes),
    ]


def hvp_rows(repeats, widths):
    """``manual.hvp`` against one ``manual.gradient``; its time at several |W| and the fitted exponent."""
    rows, points = [], []
    for width in widths:
        net, X, Y = sigmoid_problem(width)
        v = np.random.default_rng(2).standard_normal(net.n_params)
        hvp_s = median_time(lambda: manual.hvp(net, X, Y, v), repeats)
        grad_s = median_time(lambda: manual.gradient(net, X, Y), repeats)
        ratio = hvp_s / grad_s
        points.append((net.n_params, hvp_s))
        rows.append(_row(f"hvp at |W| = {net.n_params}", "manual.hvp", "manual.gradient", hvp_s, grad_s, "ratio <= 4", ratio <= 4, ratio))
    if len(points) > 1:
        (w0, t0), (w1, t1) = points[0], points[-1]
        slope = np.log(t1 / t0) / np.log(w1 / w0)
        rows.append(_row(f"hvp growth, |W| {w0} -> {w1}", "manual.hvp", "time ~ |W|^k", t0, t1, "k <= 1.1 (linear)", slope <= 1.1, slope))
    return rows


def full_rows(repeats):
    """The full Hessian at |W| ~ 5,000 (width 31): manual against ``jax.jit(jax.hessian)`` of the flat vector
    (``jax_ref.stage_hessian``)."""
    import jax_ref

    net, X, Y = sigmoid_problem(31)
    expected = manual.hessian(net, X, Y)
    ours_s = median_time(lambda: manual.hessian(net, X, Y), repeats)
    call = jax_ref.stage_hessian(net, X, Y)
    _check(jax_ref.to_numpy(call()), expected, "jax.jit(jax.hessian)")
    theirs_s = median_time(call, repeats)
    ratio = theirs_s / ours_s
    return [_row(f"full Hessian, |W| = {net.n_params}", "manual.hessian", "jax.jit(jax.hessian)", ours_s, theirs_s,
                 "speed-up >= 3x", ratio >= 3, ratio)]


def hessian_ratios(quick=False, threads=1):
    """Measure every row; returns a list of dicts (``row``, ``ours``, ``theirs``, ``ours_s``, ``theirs_s``, ``ratio``,
    ``target``, ``passed``, and the thread settings). ``quick`` uses 5 repeats and one hvp size."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import torch

    repeats = 5 if quick else 9
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            pools = sorted({f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info()})
            rows = block_rows(repeats) + write_rows(repeats) + hvp_rows(repeats, [142] if quick else [142, 284]) + full_rows(repeats)
    finally:
        torch.set_num_threads(torch_threads)
    settings = dict(threads=threads, pools=", ".join(pools), torch_threads=threads, repeats=repeats, load=_load())
    return [dict(row, **settings) for row in rows]


def _load():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _seconds(value):
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def _result(row):
    """``pass``, ``FAIL``, or ``skipped`` for a row that could not be measured (no ratio)."""
    if row["ratio"] is None:
        return "skipped"
    return "pass" if row["passed"] else "FAIL"


def format_table(rows):
    lines = [f"{'row':<38} {'ours':<40} {'theirs':<38} {'ours':>9} {'theirs':>9} {'ratio':>7}  {'target':<18} result"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"{r['row']:<38} {r['ours']:<40} {r['theirs']:<38} {_seconds(r['ours_s']):>9} {_seconds(r['theirs_s']):>9} "
                     f"{ratio:>7}  {r['target']:<18} {_result(r)}")
        if r.get("peak_bytes") is not None:
            lines.append(f"{'':<38} peak {r['peak_bytes']} bytes, block {r['block_bytes']} bytes")
        if r.get("note"):
            lines.append(f"{'':<38} {r['note']}")
    first = rows[0]
    lines.append(f"thread pools: {first['pools']}; torch threads {first['torch_threads']}; XLA: its own pool; "
                 f"median of {first['repeats']} repeats; load average at the end: {first['load']}; "
                 f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats and one hvp size")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads (default 1)")
    args = parser.parse_args(argv)
    print(format_table(hessian_ratios(quick=args.quick, threads=args.threads)))


if __name__ == "__main__":
    main()
