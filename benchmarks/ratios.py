"""Speed ratios with targets: ``manual`` timed against a peer in one process, each row passing or failing.

Every row uses a sigmoid MLP (depth 5, equal widths, unless the row names the sizes), mse loss, in the dtype of
``XVAL_DTYPE`` (float64 unless set; the targets were set for float64). The contenders are the contract's calls
(``Call.stage``: an engine's ``stage_<quantity>`` when it has one, else its plain function with numpy in and out),
set up before timing, and each result is checked against ``manual``'s before it is timed. The write floor is numpy
writing a fresh array of the output's shape (``u[:, None] * w``), the least any engine that returns that array must
spend. BackPACK and curvlinops are timed through ``benchmarks.peers`` (model, hooks and operators built before
timing; checked on the entries they compute); ``ManualOf(quantity)`` is manual's own call of another quantity on the
same data (``ggnvp`` against manual's gradient). A peer library that is not installed leaves its comparison not
judged (neither pass nor fail), and a contender whose first call takes over ``MAX_FIRST_CALL_S`` ends its row
unmeasured (failing), before the pairs would take minutes.

Timing (``benchmarks.timing.time_pairs``): one warm-up call each (jit compilation included), then manual and the
peer in interleaved pairs (manual then peer, then peer then manual, ...), at least 5 pairs, more while the pairs'
ratios spread widely and the row's time allows; a row's ratio is the median of its pairs' ratios, printed with
their interquartile range. Every call allocates a fresh result (none reuses an output). BLAS/OpenMP pools and
torch are pinned to one thread count, by default the physical cores, which is also what XLA (jax) uses.

Run: ``python -m benchmarks.ratios [--quick] [--threads N]``; exit code 0 when every row meets its target, 3
(``EXIT_TARGET_MISSED``) when one misses it or could not be measured.
"""

import argparse
import sys
from dataclasses import asdict, dataclass

import numpy as np

from xval import Network, config, contract

from . import peers as peer_libraries
from . import quantities, timing

DEPTH = 5
MAX_FIRST_CALL_S = 30.0
EXIT_TARGET_MISSED = 3  # the exit code of python -m benchmarks.ratios and python -m benchmarks when a target is missed
STAGED = {"manual": "manual", "jax": "jax_ref", "torch": "torch_ref"}


@dataclass(frozen=True)
class ManualOf:
    """A peer that is manual's own call of another ``quantity`` on the row's data (nothing to check against)."""

    quantity: str

    def __str__(self):
        return f"manual's {self.quantity}"


@dataclass(frozen=True)
class Row:
    """A row to measure: ``quantity`` on a sigmoid network of ``sizes`` with ``batch`` samples; ``targets`` maps each
    peer (``jax``, ``torch``, ``write floor``, ``backpack``, ``curvlinops``, a ``ManualOf``) to the largest allowed
    ``manual time / peer time`` (``None``: shown for reference, no target); ``seconds`` is about what the row takes
    here: its share of the work, for the progress estimate (whose rate is learned as rows finish); ``min_pairs``: the
    pairs timed at least (fewer for rows whose calls take seconds); ``jax``: what the jax peer runs, in words."""

    quantity: str
    sizes: tuple
    batch: int
    targets: dict
    seconds: float
    min_pairs: int = timing.MIN_PAIRS
    jax: str = "jax.jit"  # how jax_ref computes the quantity, in words (the jax peer's label)

    @property
    def name(self):
        net = self.network()
        depth = len(self.sizes) - 1
        shape = f"width {self.sizes[1]}" if len(set(self.sizes)) == 1 else str(list(self.sizes))
        if len(set(self.sizes)) == 1 and depth != DEPTH:
            shape += f", depth {depth}"
        return f"{self.quantity}, {shape}, N={self.batch} (P={net.n_params:,})"

    def network(self, dtype="float64"):
        return Network.random(list(self.sizes), activations="sigmoid", loss="mse", seed=0, dtype=dtype)

    def problem(self, dtype="float64"):
        net = self.network(dtype)
        rng = np.random.default_rng(1)
        X = rng.standard_normal((self.batch, net.sizes[0])).astype(dtype)
        Y = rng.standard_normal((self.batch, net.sizes[-1])).astype(dtype)
        return contract.Problem(self.name, net, X, Y, rng.standard_normal(net.n_params).astype(dtype))


def _width(w):
    return (w,) * (DEPTH + 1)


THREADED_FLOOR = "write floor, threads"  # measured beside every write floor on more than one thread, without a target


def peer_label(peer, row, threads=None):
    """What the peer of ``row`` is, in words (``threads``: the pinned count, for the threaded write floor)."""
    if isinstance(peer, ManualOf):
        return f"{peer} (same data)"
    if peer == "jax":
        return row.jax
    if peer == THREADED_FLOOR:
        return f"the same on {threads} threads"
    if peer in peer_libraries.PEERS:
        return peer_libraries.label(peer, row.quantity)
    return {"torch": "torch eager autograd", "write floor": "numpy writing the output"}[peer]


def ggnvp_products(depth):
    """``ggnvp``'s target against ``manual``'s gradient on an MLP of ``depth`` layers: its matrix products over the
    gradient's, ``(5L - 2) / (3L - 1)`` (13/8 at depth 3). Both run the forward pass (``L`` products) and one backprop
    (``L`` weight products, ``L - 1`` deltas); ``ggnvp`` adds the forward R-pass, ``V_l z_l`` on every layer and
    ``W_l R z_l`` after the first (``2L - 1``). Its added products are the forward pass's kind, which BLAS runs fastest
    per flop at N = 32 (59 us against 73 for a weight product at width 256, two threads), so a call at most this many
    times the gradient's does no more than the products it must. (Issue 24 set 1.5; the ratio had been measured at
    1.25-1.28 after the sweep, where glibc's measuring thresholds had left every fresh block of 256 KiB or more to be
    faulted in, 0.8 ms added to both calls; in a process that had measured no memory it is 1.50-1.57.)"""
    return (5 * depth - 2) / (3 * depth - 1)


ROWS = (
    Row("per_sample_gradients", _width(256), 32, {"jax": 1.0, "write floor": 1.3}, 4, jax="jax.jit(vmap(grad))"),
    Row("per_sample_gradients", _width(1024), 32, {"jax": 1.0, "write floor": 1.3}, 15, jax="jax.jit(vmap(grad))"),
    Row("gradient", _width(1024), 1, {"torch": 1.0}, 3),
    Row("forward", _width(8), 1, {"jax": 2.0}, 2, jax="jax.jit(forward)"),
    Row("gradient", _width(8), 1, {"jax": 2.0}, 2, jax="jax.jit(jax.grad)"),
    Row("hvp", _width(8), 1, {"jax": 2.5}, 2, jax="jax.jit(jvp of grad)"),
    Row("hessian", (4, 8, 3), 1, {"jax": 2.0}, 2, jax="jax.jit(jax.hessian)"),
    Row("hessian_block", (4, 8, 3), 1, {"jax": 2.0}, 2, jax="jax.jit(jax.hessian)"),
    Row("hessian_block", _width(64), 1, {"write floor": 1.2, "jax": 1 / 5}, 4, jax="jax.jit(jax.hessian)"),
    Row("hessian_block", _width(128), 1, {"write floor": 1.2}, 15),
    Row("hessian", _width(24), 1, {"write floor": 1.5, "jax": 1 / 5}, 3, jax="jax.jit(jax.hessian)"),
    # The curvature libraries at width 256, depth 3, N = 32 (P = 197,376; n_L = 256 output rows per sample).
    Row("ggn_diagonal", (256,) * 4, 32, {"backpack": 1.0}, 8),
    Row("hessian_diagonal", (256,) * 4, 32, {"backpack": 1.0}, 15, min_pairs=3),
    Row("kfac_factors", (256,) * 4, 32, {"backpack": 1.0, "curvlinops": 1.0}, 30, min_pairs=3),
    Row("ggnvp", (256,) * 4, 32, {ManualOf("gradient"): ggnvp_products(3), "curvlinops": None}, 8),
)


@dataclass(frozen=True)
class SweepRatio:
    """A ratio read off the sweep (``report.sweep_ratios``), no target: ``quantity`` on ``engine`` over
    ``other_quantity`` (default: the same) on ``other``, at the largest size both measured in ``sweep``."""

    quantity: str
    engine: str
    other: str
    other_quantity: str = None
    sweep: str = "width"

    @property
    def label(self):
        if self.other_quantity is None:
            return f"{self.quantity}: {self.engine} time / {self.other} time"
        return f"{self.quantity} time / {self.other_quantity} time ({self.engine})"


SWEEP_ROWS = (
    *(SweepRatio("hessian_block", "manual", other) for other in ("jax", "backpack", "torch", "curvlinops")),
    *(SweepRatio("hvp", engine, engine, "gradient") for engine in ("jax", "manual", "torch")),
    SweepRatio("hessian", "manual", "jax"),
    SweepRatio("ggnvp", "manual", "manual", "gradient"),
    SweepRatio("ggnvp", "manual", "curvlinops"),
    SweepRatio("ggn_diagonal", "manual", "backpack"),
    SweepRatio("hessian_diagonal", "manual", "backpack"),
    *(SweepRatio("kfac_factors", "manual", other) for other in ("backpack", "curvlinops")),
)


@dataclass
class Result:
    """One measured comparison: ``ratio`` the median over interleaved pairs of ``manual time / peer time``, passing
    when ``<= bound``; ``ratio_q1``, ``ratio_q3``: the quartiles of the pairs' ratios (the spread printed beside it);
    ``manual_s``, ``peer_s``: each side's median seconds per call over the pairs (``_min_s``: the fastest)."""

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
    ratio_q1: float = None
    ratio_q3: float = None
    pairs: int = 0
    dtype: str = "float64"
    judged: bool = True  # False: the peer could not run here (not installed, left out), so no verdict either way

    @property
    def close(self):
        """Whether the target lies within the pairs' interquartile range: another run may judge the row otherwise."""
        return (
            self.bound is not None
            and self.ratio_q1 is not None
            and self.ratio_q1 <= self.bound <= self.ratio_q3
            and self.ratio_q1 < self.ratio_q3
        )

    @property
    def target(self):
        if self.bound is None:
            return "none (for reference)"
        if self.bound < 1:
            return f"<= {self.bound:.2f} ({1 / self.bound:.0f}x faster)"
        return f"<= {self.bound:.1f}x" if round(self.bound, 1) == self.bound else f"<= {self.bound:.4g}x"


def _staged(engine_name, call):
    """``(compute, fetch)`` of the contract ``call`` on an engine: its staged call and how to read its result."""
    import importlib

    module = importlib.import_module(STAGED[engine_name])
    staged = call.function(module, staged=True) is not None
    fetch = getattr(module, "to_numpy", np.asarray) if staged else np.asarray
    return call.stage(module), lambda value: quantities.flat(fetch(value))


class PeerUnavailable(Exception):
    """A peer library that cannot run here (not installed, or left out of the run): its comparison is not judged."""


def write_floor(shape, threads=1, dtype="float64"):
    """A zero-argument call writing a fresh array of ``shape`` and ``dtype`` (one product per entry): numpy's
    broadcast product, or with ``threads > 1`` the same product written as manual writes its large results
    (``manual.arrays.Library.write``: rows split over that many threads from ``PARALLEL_BYTES`` on)."""
    rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0])
    rng = np.random.default_rng(0)
    u, w = rng.standard_normal(rows).astype(dtype), rng.standard_normal(cols).astype(dtype)
    if threads == 1:
        return lambda: u[:, None] * w[None, :]
    from manual import arrays

    def split_write():
        with arrays.pinned_threads(threads):
            return arrays.NUMPY.write(np.empty((rows, cols), dtype), slice(None), "multiply", u[:, None], w[None, :])

    return split_write


def peers(row, threads):
    """``{peer: bound}``: the row's targets, then the threaded write floor (bound ``None``) beside a write floor when
    more than one thread is pinned."""
    out = dict(row.targets)
    if "write floor" in out and threads > 1:
        out[THREADED_FLOOR] = None
    return out


def contenders(row, call, threads=1, dtype="float64", use_peers=True):
    """``{label: (compute, fetch or None, covered)}``: manual first, then each peer of the row (``fetch`` is ``None``
    for the write floors and manual's other quantities, which give nothing to check; ``covered`` the entries a peer
    library computes, ``None``: all). A peer library that cannot run gets a ``PeerUnavailable`` in place."""
    out = {"manual": (*_staged("manual", call), None)}
    for peer in peers(row, threads):
        if peer == "write floor":
            out[peer] = (write_floor(call.shape, dtype=dtype), None, None)
        elif peer == THREADED_FLOOR:
            out[peer] = (write_floor(call.shape, threads, dtype), None, None)
        elif isinstance(peer, ManualOf):
            other = contract.quantity(peer.quantity).calls(row.problem(dtype))[0]
            out[peer] = (_staged("manual", other)[0], None, None)
        elif peer in peer_libraries.PEERS:
            reason = "left out of this run (--no-peers)" if not use_peers else peer_libraries.available(peer)
            out[peer] = PeerUnavailable(reason) if reason else peer_libraries.prepare(peer, call)
        else:
            out[peer] = (*_staged(peer, call), None)
    return out


def _check(label, value, expected, quantity, dtype="float64", covered=None):
    from xval.compare import relative_error

    value, expected = quantities.flat(value), quantities.flat(expected)
    if covered is not None:
        value, expected = value[covered], expected[covered]
    error = relative_error(value, expected)
    tolerance = contract.quantity(quantity).tolerance(dtype)
    if not error <= tolerance:
        raise AssertionError(f"{label} disagrees with manual before timing: relative error {error:.3g} > {tolerance:g}")


def _first_calls(row, runs, dtype="float64"):
    """Every contender's first call, its result checked against manual's; ``{label: seconds}``, where a jitted
    peer's seconds are 0 (its first call compiled, so ``time_calls`` makes a warm one to calibrate)."""
    import time

    seconds, expected = {}, None
    for label, run in runs.items():
        if isinstance(run, PeerUnavailable):
            continue
        compute, fetch, covered = run
        start = time.perf_counter()
        value = compute()
        seconds[label] = 0.0 if label == "jax" else time.perf_counter() - start
        if seconds[label] > MAX_FIRST_CALL_S:
            who = "manual" if label == "manual" else peer_label(label, row)
            raise TimeoutError(
                f"{who}'s first call took {seconds[label]:.0f} s, over the "
                f"{MAX_FIRST_CALL_S:.0f} s a ratio row allows one call (its pairs would take minutes)"
            )
        if label == "manual":
            expected = fetch(value)
        elif fetch is not None:
            _check(peer_label(label, row), fetch(value), expected, row.quantity, dtype, covered)
        del value
    return seconds


def measure(row, pairs, threads=1, dtype="float64", use_peers=True):
    """The ``Result`` of each peer of ``row``: results checked against manual, then manual and that peer timed in
    interleaved pairs (``timing.time_pairs`` with the keyword arguments ``pairs``), one peer at a time. With three
    contenders in one rotation each always follows the same one, and a call right after jax's runs up to 2x slower
    (measured: numpy's write floor 8.5 -> 17.4 ms, and still 13.4 ms 50 ms later), so manual paid jax's aftermath in
    its comparison with the floor; a pair's two calls follow each other."""
    call = contract.quantity(row.quantity).calls(row.problem(dtype))[0]
    runs = contenders(row, call, threads, dtype, use_peers)
    first = _first_calls(row, runs, dtype)
    # The first calls are the warm-up; time_pairs makes another only to calibrate short calls (and jitted ones).
    results = []
    for peer, bound in peers(row, threads).items():
        if isinstance(runs[peer], PeerUnavailable):
            results.append(
                Result(
                    row.name,
                    peer_label(peer, row, threads),
                    None,
                    None,
                    None,
                    None,
                    None,
                    bound,
                    None,
                    note=f"not judged: {runs[peer]}",
                    dtype=dtype,
                    judged=False,
                )
            )
            continue
        timed = timing.time_pairs(
            runs["manual"][0],
            runs[peer][0],
            first=[first["manual"], first[peer]],
            jitted=(False, peer == "jax"),
            **pairs,
        )
        ours, theirs, ratio = timed["a"], timed["b"], timed["ratio"]
        results.append(
            Result(
                row.name,
                peer_label(peer, row, threads),
                ours["median"],
                ours["min"],
                theirs["median"],
                theirs["min"],
                ratio,
                bound,
                None if bound is None else ratio <= bound,
                ratio_q1=timed["ratio_q1"],
                ratio_q3=timed["ratio_q3"],
                pairs=timed["pairs"],
                dtype=dtype,
            )
        )
    return results


def failed(row, exc, threads=1, dtype="float64"):
    """The results of a row that could not be measured: one per peer, failing (unless it has no target), with the
    reason."""
    return [
        Result(
            row.name,
            peer_label(peer, row, threads),
            None,
            None,
            None,
            None,
            None,
            bound,
            None if bound is None else False,
            note=f"not measured: {type(exc).__name__}: {exc}",
            dtype=dtype,
        )
        for peer, bound in peers(row, threads).items()
    ]


def pair_settings(quick, row):
    """How many pairs a row gets: its ``min_pairs`` (5 unless it says fewer); without ``--quick`` up to 25 while their
    spread is over 10% of the median and the pairs have taken under the row's nominal seconds."""
    if quick:
        return dict(min_pairs=row.min_pairs, budget_s=None, min_repeat_s=0.01)
    return dict(
        min_pairs=row.min_pairs,
        max_pairs=timing.MAX_PAIRS,
        spread_limit=timing.SPREAD_LIMIT,
        budget_s=row.seconds,
        min_repeat_s=0.02,
    )


def run(quick=False, threads=None, rows=ROWS, progress=True, dtype=None, use_peers=True):
    """Measure every row on ``threads`` threads (default: the physical cores) in ``dtype`` (default: ``XVAL_DTYPE``);
    ``(results, settings)``. ``use_peers=False`` leaves BackPACK and curvlinops out (not judged)."""
    from .progress import Progress, RateEstimate

    threads = threads or timing.default_threads()
    dtype = dtype or config.dtype()
    results = []
    estimate = RateEstimate([r.seconds for r in rows])
    with (
        timing.pinned_threads(threads) as pools,
        Progress("ratio rows", len(rows), estimate, unit="rows", disable=not progress) as bar,
    ):
        for index, row in enumerate(rows):
            bar.begin(index, row.name)
            try:
                results += measure(row, pair_settings(quick, row), threads, dtype, use_peers)
            except Exception as exc:  # noqa: BLE001 - one row failing leaves the others' figures
                results += failed(row, exc, threads, dtype)
            bar.end(index)
            bar.advance(1)
    extra = (
        ""
        if quick
        else (
            f", more (up to {timing.MAX_PAIRS}) while their interquartile range is over "
            f"{timing.SPREAD_LIMIT:.0%} of the median and time allows"
        )
    )
    settings = dict(
        threads=threads,
        pools=pools,
        dtype=dtype,
        min_pairs=timing.MIN_PAIRS,
        timing=f"manual and the peer in interleaved pairs (A B, B A, ...), {_pairs_text(rows)}"
        f"{extra}; fresh outputs for every call",
    )
    return results, settings


def _pairs_text(rows):
    fewer = sorted({row.min_pairs for row in rows if row.min_pairs != timing.MIN_PAIRS})
    if not fewer:
        return f"{timing.MIN_PAIRS} pairs"
    return (
        f"{timing.MIN_PAIRS} pairs ({' or '.join(map(str, fewer))} in rows whose calls take seconds; the pairs "
        "column gives each row's)"
    )


def as_records(results):
    """The results as plain dicts (for ``results.json``)."""
    return [dict(asdict(r), target=r.target) for r in results]


def _seconds(value):
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def ratio_text(ratio, bound=None):
    """``0.47``; with more digits where two decimals would print the target itself (``0.2047`` against ``<= 0.20``)."""
    if ratio is None:
        return "-"
    text = f"{ratio:.2f}"
    return f"{ratio:.4f}" if bound is not None and ratio != bound and text == f"{bound:.2f}" else text


def _spread(r):
    return "-" if r.ratio_q1 is None else f"{r.ratio_q1:.2f}-{r.ratio_q3:.2f}"


def format_table(results, settings):
    """The results as text: a header line naming the dtype, one line per comparison, then how they were timed."""
    dtype = settings.get("dtype", "float64")
    width = max(len("row"), *(len(r.row) for r in results))
    peer_width = max(24, *(len(r.peer) for r in results))
    lines = [
        f"speed-ratio rows, {dtype}: ratio = manual time / peer time, the median over interleaved pairs, with "
        "the interquartile range of the pairs' ratios as its spread",
        f"{'row':<{width}} {'peer':<{peer_width}} {'manual':>9} {'peer':>9} {'ratio':>6} {'spread':>11} "
        f"{'pairs':>5}  {'target':<20} result",
    ]
    for r in results:
        ratio = ratio_text(r.ratio, r.bound)
        verdict = "-" if r.passed is None else ("pass" if r.passed else "FAIL") + (" (close)" if r.close else "")
        lines.append(
            f"{r.row:<{width}} {r.peer:<{peer_width}} {_seconds(r.manual_s):>9} {_seconds(r.peer_s):>9} "
            f"{ratio:>6} {_spread(r):>11} {r.pairs or '-':>5}  {r.target:<20} {verdict}"
        )
        if r.note:
            lines.append(f"{'':<{width}} {r.note}")
    lines.append("manual, peer: each side's median time per call over the pairs; the target applies to the ratio")
    if any(r.close for r in results):
        lines.append(
            "(close): the target lies within the spread of the pairs' ratios; another run may judge it otherwise"
        )
    lines.append(f"timed: {settings['timing']}; sigmoid MLPs, mse, {dtype}, one process")
    if any(r.peer == peer_label(THREADED_FLOOR, None, settings["threads"]) for r in results):
        lines.append(
            f"manual splits a large write over the {settings['threads']} pinned threads; numpy writes on "
            f"one, so each write floor is also shown with its rows split over {settings['threads']} threads "
            "(no target)"
        )
    return "\n".join(lines)


def missed(results):
    """The comparisons with a target that do not meet it (a row that could not be measured misses it too; one whose
    peer library cannot run here is not judged)."""
    return [r for r in results if r.bound is not None and r.judged and not r.passed]


def verdict_line(results):
    """``2 of 15 ratio rows miss their target: ...`` (each named, with its ratio), or that all meet it; then the
    comparisons not judged because their peer cannot run here."""
    judged = [r for r in results if r.bound is not None and r.judged]
    unjudged = [r for r in results if r.bound is not None and not r.judged]
    misses = missed(results)
    if not misses:
        line = f"all {len(judged)} ratio rows meet their target"
    else:
        named = "; ".join(
            f"{r.row} against {r.peer} ("
            f"{'not measured' if r.ratio is None else ratio_text(r.ratio, r.bound)}, target {r.target})"
            for r in misses
        )
        line = f"{len(misses)} of {len(judged)} ratio rows miss their target: {named}"
    if unjudged:
        line += f"; {len(unjudged)} not judged (the peer cannot run here): " + "; ".join(
            f"{r.row} against {r.peer}" for r in unjudged
        )
    return line


EXIT_CODES = (
    f"exit codes: 0 every row meets its target; {EXIT_TARGET_MISSED} a row misses its target (or could "
    "not be measured); 2 a bad flag or setting"
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratios", epilog=EXIT_CODES, description=__doc__.split("\n\n")[0].replace("``", "")
    )
    parser.add_argument("--quick", action="store_true", help="5 pairs per row, no more (about a minute)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="BLAS/OpenMP/torch threads and manual's write threads, pinned (default: the physical cores, as XLA uses)",
    )
    return parser


def main(argv=None):
    """Measure, print the table and the verdict line; the exit code (``EXIT_TARGET_MISSED`` when a row misses)."""
    from xval.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads} is not valid; pass a whole number of threads >= 1")
    try:
        dtype = config.dtype()
    except ConfigError as exc:
        parser.error(str(exc))
    results, settings = run(quick=args.quick, threads=args.threads, dtype=dtype)
    print(format_table(results, settings))
    print(timing.threads_line(settings["threads"], f"every row ({settings['pools']})"))
    print(verdict_line(results))
    return EXIT_TARGET_MISSED if missed(results) else 0


if __name__ == "__main__":
    sys.exit(main())
