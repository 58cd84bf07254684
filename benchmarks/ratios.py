"""Speed ratios with targets: ``manual`` timed in turn with a peer in one process, each row passing or failing.

Every row uses a sigmoid MLP (depth 5, equal widths, unless the row names the sizes), mse loss, float64. The
contenders are the contract's calls (``Call.stage``: an engine's ``stage_<quantity>`` when it has one, else its
plain function with numpy in and out), set up before timing, and each result is checked against ``manual``'s
before it is timed. The write floor is numpy writing a fresh array of the output's shape (``u[:, None] * w``), the
least any engine that returns that array must spend.

Timing (``benchmarks.timing.time_calls``): one warm-up call each (jit compilation included), then, for each peer,
several repeats in which manual and that peer take turns, the order rotated every repeat; median and min per
contender. Every
call allocates a fresh result (none reuses an output). BLAS/OpenMP pools and torch are pinned to one thread count,
by default the physical cores, which is also what XLA (jax) uses.

Run: ``python -m benchmarks.ratios [--quick] [--threads N]``.
"""
import argparse
import sys
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from xval import Network, contract

from . import timing

DEPTH = 5
STAGED = {"manual": "manual", "jax": "jax_ref", "torch": "torch_ref"}


@dataclass(frozen=True)
class Row:
    """A row to measure: ``quantity`` on a sigmoid network of ``sizes`` with ``batch`` samples; ``targets`` maps each
    peer (``jax``, ``torch``, ``write floor``) to the largest allowed ``manual time / peer time``; ``seconds`` is
    about what the row takes here (for the progress estimate)."""

    quantity: str
    sizes: tuple
    batch: int
    targets: dict
    seconds: float

    @property
    def name(self):
        net = self.network()
        shape = f"width {self.sizes[1]}" if len(set(self.sizes)) == 1 else str(list(self.sizes))
        return f"{self.quantity}, {shape}, N={self.batch} (P={net.n_params:,})"

    def network(self):
        return Network.random(list(self.sizes), activations="sigmoid", loss="mse", seed=0)

    def problem(self):
        net = self.network()
        rng = np.random.default_rng(1)
        X = rng.standard_normal((self.batch, net.sizes[0]))
        Y = rng.standard_normal((self.batch, net.sizes[-1]))
        return contract.Problem(self.name, net, X, Y, rng.standard_normal(net.n_params))


def _width(w):
    return (w,) * (DEPTH + 1)


JAX_LABELS = {"forward": "jax.jit(forward)", "gradient": "jax.jit(jax.grad)", "hvp": "jax.jit(jvp of grad)",
              "per_sample_gradients": "jax.jit(vmap(grad))", "hessian": "jax.jit(jax.hessian)",
              "hessian_block": "jax.jit(jax.hessian)"}


THREADED_FLOOR = "write floor, threads"  # measured beside every write floor on more than one thread, without a target


def peer_label(peer, quantity, threads=None):
    """What the peer of a row is, in words (``threads``: the pinned count, for the threaded write floor)."""
    if peer == "jax":
        return JAX_LABELS[quantity]
    if peer == THREADED_FLOOR:
        return f"the same on {threads} threads"
    return {"torch": "torch eager autograd", "write floor": "numpy writing the output"}[peer]



ROWS = (
    Row("per_sample_gradients", _width(256), 32, {"jax": 1.0, "write floor": 1.3}, 4),
    Row("per_sample_gradients", _width(1024), 32, {"jax": 1.0, "write floor": 1.3}, 15),
    Row("gradient", _width(1024), 1, {"torch": 1.0}, 3),
    Row("forward", _width(8), 1, {"jax": 2.0}, 2),
    Row("gradient", _width(8), 1, {"jax": 2.0}, 2),
    Row("hvp", _width(8), 1, {"jax": 2.5}, 2),
    Row("hessian", (4, 8, 3), 1, {"jax": 2.0}, 2),
    Row("hessian_block", (4, 8, 3), 1, {"jax": 2.0}, 2),
    Row("hessian_block", _width(64), 1, {"write floor": 1.2, "jax": 1 / 5}, 4),
    Row("hessian_block", _width(128), 1, {"write floor": 1.2}, 15),
    Row("hessian", _width(24), 1, {"write floor": 1.5, "jax": 1 / 5}, 3),
)


@dataclass
class Result:
    """One measured comparison: ``ratio = manual median / peer median``, passing when ``<= bound``."""

    row: str
    peer: str
    manual_s: float
    manual_min_s: float
    peer_s: float
    peer_min_s: float
    ratio: float
    bound: float
    passed: bool
    note: str = ""

    @property
    def target(self):
        if self.bound is None:
            return "none (for reference)"
        if self.bound < 1:
            return f"<= {self.bound:.2f} ({1 / self.bound:.0f}x faster)"
        return f"<= {self.bound:.1f}x"


def _staged(engine_name, call):
    """``(compute, fetch)`` of the contract ``call`` on an engine: its staged call and how to read its result."""
    import importlib

    module = importlib.import_module(STAGED[engine_name])
    staged = call.function(module, staged=True) is not None
    fetch = getattr(module, "to_numpy", np.asarray) if staged else np.asarray
    return call.stage(module), fetch


def write_floor(shape, threads=1):
    """A zero-argument call writing a fresh float64 array of ``shape`` (one product per entry): numpy's broadcast
    product, or with ``threads > 1`` the same product written as manual writes its large results
    (``manual.arrays.Library.write``: rows split over that many threads from ``PARALLEL_BYTES`` on)."""
    rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0])
    rng = np.random.default_rng(0)
    u, w = rng.standard_normal(rows), rng.standard_normal(cols)
    if threads == 1:
        return lambda: u[:, None] * w[None, :]
    from manual import arrays

    def split_write():
        with arrays.pinned_threads(threads):
            return arrays.NUMPY.write(np.empty((rows, cols)), slice(None), "multiply", u[:, None], w[None, :])

    return split_write


def peers(row, threads):
    """``{peer: bound}``: the row's targets, then the threaded write floor (bound ``None``) beside a write floor when
    more than one thread is pinned."""
    out = dict(row.targets)
    if "write floor" in out and threads > 1:
        out[THREADED_FLOOR] = None
    return out


def contenders(row, call, threads=1):
    """``{label: (compute, fetch or None)}``: manual first, then each peer of the row (``fetch`` is ``None`` for
    the write floors, which compute nothing to check)."""
    out = {"manual": _staged("manual", call)}
    for peer in peers(row, threads):
        if peer == "write floor":
            out[peer] = (write_floor(call.shape), None)
        elif peer == THREADED_FLOOR:
            out[peer] = (write_floor(call.shape, threads), None)
        else:
            out[peer] = _staged(peer, call)
    return out


def _check(label, value, expected, quantity):
    from xval.compare import relative_error

    error = relative_error(value, expected)
    tolerance = contract.quantity(quantity).tolerance("float64")
    if not error <= tolerance:
        raise AssertionError(f"{label} disagrees with manual before timing: relative error {error:.3g} > {tolerance:g}")


def _first_calls(row, runs):
    """Every contender's first call, its result checked against manual's; ``{label: seconds}``, where a jitted
    peer's seconds are 0 (its first call compiled, so ``time_calls`` makes a warm one to calibrate)."""
    import time

    seconds, expected = {}, None
    for label, (compute, fetch) in runs.items():
        start = time.perf_counter()
        value = compute()
        seconds[label] = 0.0 if label == "jax" else time.perf_counter() - start
        if label == "manual":
            expected = fetch(value)
        elif fetch is not None:
            _check(label, fetch(value), expected, row.quantity)
        del value
    return seconds


def measure(row, repeats, min_repeat_s, threads=1):
    """The ``Result`` of each peer of ``row``: results checked against manual, then manual and that peer timed in
    turn, one pair at a time. With three contenders in one rotation each always follows the same one, and a call
    right after jax's runs up to 2x slower (measured: numpy's write floor 8.5 -> 17.4 ms, and still 13.4 ms 50 ms
    later), so manual paid jax's aftermath in its comparison with the floor; a pair follows each other in turn."""
    call = contract.quantity(row.quantity).calls(row.problem())[0]
    runs = contenders(row, call, threads)
    first = _first_calls(row, runs)
    # The first calls are the warm-up; time_calls makes another only to calibrate short calls (and jitted ones).
    results = []
    for peer, bound in peers(row, threads).items():
        ours, theirs = timing.time_calls([runs["manual"][0], runs[peer][0]], repeats=repeats, min_repeat_s=min_repeat_s,
                                         first=[first["manual"], first[peer]])
        ratio = ours["median"] / theirs["median"]
        results.append(Result(row.name, peer_label(peer, row.quantity, threads), ours["median"], ours["min"],
                              theirs["median"], theirs["min"], ratio, bound, None if bound is None else ratio <= bound))
    return results


def failed(row, exc, threads=1):
    """The results of a row that could not be measured: one per peer, failing (unless it has no target), with the
    reason."""
    return [Result(row.name, peer_label(peer, row.quantity, threads), None, None, None, None, None, bound,
                   None if bound is None else False, note=f"not measured: {type(exc).__name__}: {exc}")
            for peer, bound in peers(row, threads).items()]


def run(quick=False, threads=None, rows=ROWS, progress=True):
    """Measure every row on ``threads`` threads (default: the physical cores); ``(results, settings)``."""
    from tqdm import tqdm

    threads = threads or timing.default_threads()
    repeats, min_repeat_s = (3, 0.01) if quick else (7, 0.02)
    results = []
    estimate = sum(r.seconds for r in rows) * (0.6 if quick else 1.0)
    with timing.pinned_threads(threads) as pools, tqdm(total=round(estimate), desc="ratio rows", unit="s",
                                                       file=sys.stderr, disable=not progress,
                                                       bar_format="{l_bar}{bar}| about {remaining} left{postfix}") as bar:
        for row in rows:
            bar.set_postfix_str(row.name)
            try:
                results += measure(row, repeats, min_repeat_s, threads)
            except Exception as exc:  # noqa: BLE001 - one row failing leaves the others' figures
                results += failed(row, exc, threads)
            bar.update(round(row.seconds * (0.6 if quick else 1.0)))
    settings = dict(threads=threads, pools=pools, repeats=repeats,
                    timing="manual and each peer in turn, rotated order, fresh outputs for every contender, median and min")
    return results, settings


def as_records(results):
    """The results as plain dicts (for ``results.json``)."""
    return [dict(asdict(r), target=r.target) for r in results]


def _seconds(value):
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def format_table(results, settings):
    """The results as text: one line per comparison, then how they were timed."""
    width = max(len("row"), *(len(r.row) for r in results))
    lines = [f"{'row':<{width}} {'peer':<24} {'manual':>9} {'peer':>9} {'ratio':>6} {'of mins':>7}  {'target':<20} result"]
    for r in results:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        of_mins = "-" if r.ratio is None else f"{r.manual_min_s / r.peer_min_s:.2f}"
        verdict = "-" if r.passed is None else "pass" if r.passed else "FAIL"
        lines.append(f"{r.row:<{width}} {r.peer:<24} {_seconds(r.manual_s):>9} {_seconds(r.peer_s):>9} {ratio:>6} "
                     f"{of_mins:>7}  {r.target:<20} {verdict}")
        if r.note:
            lines.append(f"{'':<{width}} {r.note}")
    lines.append(f"ratio = manual time / peer time, medians of {settings['repeats']} repeats (of mins: the fastest "
                 "repeats', less sensitive to a busy machine); the target applies to the medians")
    lines.append(f"timed: {settings['timing']}; sigmoid MLPs, mse, float64, one process")
    if any(r.bound is None for r in results):
        lines.append(f"manual splits a large write over the {settings['threads']} pinned threads; numpy writes on one, so "
                     f"each write floor is also shown with its rows split over {settings['threads']} threads (no target)")
    return "\n".join(lines)


def verdict_line(results):
    """How many comparisons with a target meet it."""
    judged = [r for r in results if r.bound is not None]
    return f"{sum(bool(r.passed) for r in judged)} of {len(judged)} comparisons meet their target"


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ratios", description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7 (about a minute)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="BLAS/OpenMP/torch threads and manual's write threads, pinned (default: the physical cores, as XLA uses)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    results, settings = run(quick=args.quick, threads=args.threads)
    print(format_table(results, settings))
    print(timing.threads_line(settings["threads"], f"every row ({settings['pools']})"))
    print(verdict_line(results))


if __name__ == "__main__":
    main()
