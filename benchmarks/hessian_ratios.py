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
import statistics
import time
import tracemalloc

import numpy as np

import manual

DEPTH = 5
LAYER = 1


def sigmoid_problem(width, depth=DEPTH, seed=0):
    """A depth-``depth`` sigmoid network of equal widths, one sample, float64, mse."""
    net = manual.Network.random([width] * (depth + 1), "sigmoid", "mse", seed=seed)
    rng = np.random.default_rng(seed + 1)
    return net, rng.standard_normal((1, width)), rng.standard_normal((1, width))


def median_time(call, repeats):
    """Median seconds of ``call()`` over ``repeats`` runs, after one warm-up run (compilation included there)."""
    return paired_median_times([call], repeats)[0]


def paired_median_times(calls, repeats):
    """Median seconds of each of ``calls``, timed in turn within every repeat after one warm-up run of each.

    For calls that allocate arrays of gigabytes: alternating them gives both the same allocator and page state
    (on a virtual machine the first touch of fresh memory can cost several times the writing itself).
    """
    for call in calls:
        call()
    samples = [[] for _ in calls]
    for _ in range(repeats):
        for call, out in zip(calls, samples):
            gc.collect()
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
    return [statistics.median(out) for out in samples]


def _check(actual, expected, what, rtol=1e-10):
    from xval.compare import relative_error

    error = relative_error(actual, expected)
    if not error <= rtol:
        raise AssertionError(f"{what} disagrees with manual before timing: relative error {error:.3g}")


# ---- the peers, each a zero-argument call returning the block as numpy (for the check) -------------
def jax_layer_hessian(net, X, Y, layer):
    """``jax.jit(jax.hessian)`` of ``E`` as a function of layer ``layer``'s flat parameters."""
    import jax

    from jax_ref import model

    objective = model.make_objective(model.architecture(net))
    params = model.parameters(net)
    Xj, Yj = model.data(net, X, Y)

    def of_layer(theta, others, X, Y):
        layers = list(others)
        layers[layer] = theta
        return objective(tuple(layers), X, Y)

    compiled = jax.jit(jax.hessian(of_layer))
    return lambda: compiled(params[layer], params, Xj, Yj).block_until_ready()


def jax_full_hessian(net, X, Y):
    """``jax.jit(jax.hessian)`` of ``E`` as a function of the flat parameter vector."""
    import jax
    import jax.numpy as jnp

    from jax_ref import model

    objective = model.make_objective(model.architecture(net))
    ends = np.cumsum(net.layer_param_counts)[:-1]
    compiled = jax.jit(jax.hessian(lambda theta, X, Y: objective(tuple(jnp.split(theta, ends)), X, Y)))
    theta = model.array(net.to_vector(), net.dtype)
    Xj, Yj = model.data(net, X, Y)
    return lambda: compiled(theta, Xj, Yj).block_until_ready()


def torch_layer_hessian(net, X, Y, layer):
    """``torch.func.hessian`` of ``E`` as a function of layer ``layer``'s flat parameters."""
    from torch.func import hessian

    from torch_ref import model

    params = model.parameters(net)
    Xt, Yt = model.data(net, X, Y)

    def of_layer(theta):
        layers = list(params)
        layers[layer] = theta
        return model.objective(net, layers, Xt, Yt)

    return lambda: hessian(of_layer)(params[layer]).detach()


def backpack_layer_hmp(net, X, Y, layer):
    """BackPACK's HMP (block-diagonal Hessian times a matrix) applied to the identity, for ``W_layer`` and ``b_layer``.

    HMP's blocks are per parameter tensor, so this is the weight-weight and bias-bias parts of the block (the
    weight-bias part is not computed: slightly less work than ``manual``'s full block). ``MSELoss(reduction="sum")``
    is twice the suite's ``0.5 * ||y_hat - y||^2`` for one sample; the check accounts for that.
    """
    import torch
    from backpack import backpack, extend
    from backpack.extensions import HMP

    modules = []
    for index, (w, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(np.array(w)))
            linear.bias.copy_(torch.as_tensor(np.array(b)))
        modules.append(linear)
        if index < net.n_layers - 1:
            modules.append(torch.nn.Sigmoid())
    model = extend(torch.nn.Sequential(*modules))
    loss_fn = extend(torch.nn.MSELoss(reduction="sum"))
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    weight, bias = modules[2 * layer].weight, modules[2 * layer].bias
    eye_w = torch.eye(weight.numel(), dtype=torch.float64).reshape(-1, *weight.shape)
    eye_b = torch.eye(bias.numel(), dtype=torch.float64)

    def run():
        model.zero_grad()
        loss = loss_fn(model(Xt), Yt)
        with backpack(HMP()):
            loss.backward()
        with torch.no_grad():
            return weight.hmp(eye_w).reshape(weight.numel(), -1) / 2, bias.hmp(eye_b) / 2

    return run


def backpack_available():
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import backpack  # noqa: F401
        return True
    except ImportError:
        return False


# ---- the rows -----------------------------------------------------------------------------------
def _row(name, ours, theirs, ours_s, theirs_s, target, passed, ratio, **extra):
    return dict(row=name, ours=ours, theirs=theirs, ours_s=ours_s, theirs_s=theirs_s, ratio=ratio, target=target, passed=bool(passed), **extra)


def block_rows(repeats):
    """Width 64, block of layer 1: manual against jax, torch and BackPACK (speed-ups, ``theirs / ours``)."""
    net, X, Y = sigmoid_problem(64)
    ours_call = lambda: manual.hessian_block(net, X, Y, LAYER, LAYER)  # noqa: E731
    expected = ours_call()
    ours_s = median_time(ours_call, repeats)
    weights = net.weights[LAYER].size
    rows = []
    peers = [
        ("jax.jit(jax.hessian) of layer 1", lambda: jax_layer_hessian(net, X, Y, LAYER), 3.0, lambda r: np.asarray(r)),
        ("torch.func.hessian of layer 1", lambda: torch_layer_hessian(net, X, Y, LAYER), 8.0, lambda r: r.numpy()),
    ]
    if backpack_available():
        peers.append(("BackPACK HMP(identity), W and b parts", lambda: backpack_layer_hmp(net, X, Y, LAYER), 3.0, None))
    for name, build, target, to_numpy in peers:
        call = build()
        result = call()
        if to_numpy is None:  # BackPACK: the weight-weight and bias-bias parts
            _check(result[0].numpy(), expected[:weights, :weights], name)
            _check(result[1].numpy(), expected[weights:, weights:], name)
        else:
            _check(to_numpy(result), expected, name)
        theirs_s = median_time(call, repeats)
        ratio = theirs_s / ours_s
        rows.append(_row(f"block width 64 (side {expected.shape[0]})", "manual.hessian_block", name, ours_s, theirs_s,
                         f"speed-up >= {target:g}x", ratio >= target, ratio))
    if not backpack_available():
        rows.append(_row("block width 64", "manual.hessian_block", "BackPACK HMP", ours_s, None, "speed-up >= 3x", False, None,
                         note="backpack not importable: pip install --no-deps backpack-for-pytorch einops unfoldnd"))
    return rows


def write_rows(repeats):
    """Width 128, block of layer 1: time against writing an array of its size, peak memory against its bytes."""
    net, X, Y = sigmoid_problem(128)
    side = net.layer_param_counts[LAYER]
    block_bytes = side * side * 8
    u = np.random.default_rng(0).standard_normal(side)
    # The faster of two ways numpy writes a fresh (side, side) array of products (the stricter baseline), timed
    # in turn with the block so that all three meet the same memory state.
    ours_s, outer_s, broadcast_s = paired_median_times(
        [lambda: manual.hessian_block(net, X, Y, LAYER, LAYER), lambda: np.multiply.outer(u, u), lambda: u[:, None] * u[None, :]],
        repeats,
    )
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
    """The full Hessian at |W| ~ 5,000 (width 31): manual against ``jax.jit(jax.hessian)``."""
    net, X, Y = sigmoid_problem(31)
    expected = manual.hessian(net, X, Y)
    ours_s = median_time(lambda: manual.hessian(net, X, Y), repeats)
    call = jax_full_hessian(net, X, Y)
    _check(np.asarray(call()), expected, "jax.jit(jax.hessian)")
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
