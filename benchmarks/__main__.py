"""``python -m benchmarks``: time per sample and peak memory versus |W| for every selected engine, fitted
scaling exponents, the speed-ratio rows with their targets, JSON/CSV of every point and PNG plots."""

import argparse
import os
import sys
import time

from xval.errors import ConfigError

EXIT_WRITE_FAILED, EXIT_USAGE, EXIT_TARGET_MISSED = 1, 2, 3  # EXIT_TARGET_MISSED is ratios.EXIT_TARGET_MISSED
EXIT_CODES = (
    "exit codes: 0 the run finished and every target it judged was met; 1 an output could not be written "
    "(a full disk: the error line says what was saved); 2 a bad flag, setting or --out, before any work; "
    f"{EXIT_TARGET_MISSED} a ratio row or GPU row missed its target (the summary line names them); 130, 143 "
    "interrupted by SIGINT, SIGTERM (what was measured is saved; --resume continues)"
)


def build_parser():
    """The command line (the README's flag table is generated from it: ``python -m benchmarks.readme``)."""
    from .plan import QUANTITIES

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.replace("``", ""), epilog=EXIT_CODES
    )
    parser.add_argument(
        "--backend", metavar="NAMES", help="comma list of engines (overrides XVAL_BACKEND; default manual,torch,jax)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides XVAL_DEVICE (default auto)")
    parser.add_argument("--out", metavar="DIR", default="bench-results", help="output folder (default bench-results/)")
    parser.add_argument(
        "--quick", action="store_true", help="a small sweep without the ratio rows (under a minute): the CI smoke test"
    )
    parser.add_argument("--resume", action="store_true", help="keep the points already in --out and skip them")
    parser.add_argument("--quantities", metavar="Q1,Q2", help=f"comma list, a subset of: {', '.join(QUANTITIES)}")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="BLAS/OpenMP/torch threads and manual's write threads for every timed row, pinned "
        "(default: the physical cores)",
    )
    parser.add_argument("--no-peers", action="store_true", help="leave out BackPACK and curvlinops even if installed")
    parser.add_argument(
        "--no-ratios",
        action="store_true",
        help="skip the speed-ratio rows of benchmarks.ratios (always skipped with --quick)",
    )
    parser.add_argument(
        "--max-call-seconds",
        type=float,
        default=None,
        metavar="S",
        help="skip larger sizes of a series once one call takes longer (default 4, quick 1)",
    )
    return parser


def parse_args(argv=None):
    from .plan import QUANTITIES

    parser = build_parser()
    parser.error = _error  # every start-up problem reads "error: ..." with exit code 2
    args = parser.parse_args(argv)
    if args.quantities:
        chosen = [q.strip() for q in args.quantities.split(",") if q.strip()]
        bad = [q for q in chosen if q not in QUANTITIES]
        if bad or not chosen:
            parser.error(f"--quantities names unknown quantities {bad}; valid: {', '.join(QUANTITIES)}")
        args.quantities = tuple(chosen)
    else:
        args.quantities = QUANTITIES
    return args


def _error(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def apply_overrides(args, environ=os.environ):
    """Flags override the ``XVAL_*`` settings; engines read them through ``xval.config``."""
    if args.backend:
        environ["XVAL_BACKEND"] = args.backend
    if args.device:
        environ["XVAL_DEVICE"] = args.device


def main(argv=None):
    from . import outdir, results

    args = parse_args(argv)
    try:
        outdir.check_flags(args)
        apply_overrides(args)
        session = outdir.Session(outdir.check_start(args))
    except outdir.StartError as exc:
        return _error(exc)
    session.catch_signals()
    try:
        return _main(args, session)
    except outdir.StartError as exc:
        return _error(exc)
    except results.WriteError as exc:
        session.ignore_signals()
        return session.write_failed(exc)
    except outdir.Interrupted as exc:
        return session.interrupted(exc.signum, lambda *saved: outdir.write_outputs(session, *saved))
    finally:
        session.release()


def _main(args, session):
    # jax would otherwise claim 75% of a GPU's memory when it first touches it, leaving torch and the peers the
    # rest, and its peak counter would not be the computation's own; set before jax is imported.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from xval import config

    from .machine import resolve_device

    try:
        engines = config.backends()
        dtype = config.dtype()
        device, device_note = resolve_device()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Engines then run where the results say they ran: an engine that cannot use the GPU of a cuda run fails its
    # points with the reason instead of measuring on the CPU under the cuda label.
    os.environ["XVAL_DEVICE"] = device
    return run(args, engines, dtype, device, device_note, session)


def run_settings(args, engines, peer_names, dtype, device, device_note, threads):
    """What ``results.json`` records about how the run measured."""
    from . import fit, memory

    return {
        "quick": args.quick,
        "engines": engines,
        "threads": threads,
        "peers": peer_names,
        "dtype": dtype,
        "device": device,
        "device_note": device_note,
        "repeats": 5,
        "min_repeat_s": 0.002 if args.quick else 0.02,
        "max_call_s": args.max_call_seconds or (1.0 if args.quick else 4.0),
        "quantities": list(args.quantities),
        "network": "width and depth sweeps: MLPs of equal widths, tanh hidden layers, identity output; channels "
        "sweep: 2 x (Conv2d(C, C, 3, padding 1), tanh) on (C, 8, 8) inputs, AvgPool2d(4), flatten, "
        "Linear(4 C, 10); "
        "mse loss, seed 0",
        "memory_method_cpu": "rss-growth (clear_refs + VmHWM)" if memory.cpu_method_available() else "unavailable",
        "threads_note": "BLAS/OpenMP pools and torch intra-op threads pinned; XLA (jax) keeps its own pool",
        "timed": "each engine's staged call: parameters and data placed on its device before timing, the result "
        "left there and waited for (host-device copies are not timed), manual included (arrays of its "
        "library)",
        "fit": "least squares of log(time per sample) on log(|W|), from the first size taking 2x the series' smallest "
        "time on (where the work dominates); 95% t interval from 5 points up",
        "remeasured": f"a point whose time is more than {fit.OUTLIER_FACTOR:g}x off its neighbours' trend "
        "(fit.outliers) "
        "is measured once more before the fit, which uses the second time; the point keeps the first in "
        "'remeasured'",
    }


def summary_lines(
    points, ratio_note, threads, elapsed, sweep_s, ratios_ran, gpu_records=(), dtype="float64", left_out=None
):
    """What the run prints after measuring: the fitted table, the ratios, the peak memory against its bound (and the
    GPU rows' ``gpu_records``, if any), the counts and the thread count; ``left_out``: ``{quantity: [engines]}`` the
    run did not plan because the engine lacks the function."""
    from . import gpu_rows, report, sweep, timing

    counts = sweep.summary_counts(points)
    ratios_s = f", ratio rows {elapsed - sweep_s:.0f} s" if ratios_ran else ""
    lines = [
        "",
        report.slope_table(points),
        "",
        report.ratio_table(points),
        "",
        report.memory_table(report.memory_records(points), dtype),
        "",
        "speed-ratio rows (python -m benchmarks.ratios):",
        ratio_note,
        "",
    ]
    if gpu_records:
        lines += [
            f"GPU rows ({dtype}; width sweep, depth 3, one sample; time median, peak device memory):",
            gpu_rows.format_table(gpu_records),
            "",
        ]
    lines += [
        f"points: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; {elapsed:.0f} s "
        f"(sweep {sweep_s:.0f} s{ratios_s})",
        timing.threads_line(threads, "every timed row (sweep and ratio rows)"),
    ]
    lines += [
        f"  not measured, no such function in the engine (yet): {quantity}: {', '.join(engines)}"
        for quantity, engines in (left_out or {}).items()
    ]
    return (
        lines + sweep.failure_lines(points) + sweep.failure_lines(points, "skipped") + sweep.unvalidated_lines(points)
    )


def gpu_targets(records):
    """``(missed, judged, not judged)`` of the GPU rows' targets (time, and peak where a row has one): the missed ones
    as ``row (what ratio, target)``, how many were judged, and those that could not be (a point missing or out of
    memory) as ``row (what)``."""
    missed, judged, unjudged = [], 0, []
    for r in records:
        for what in ("time", "peak"):
            if r.get(f"{what}_target") is None:
                continue
            met = r.get(f"{what}_met")
            if met is None:
                unjudged.append(f"{r['row']} ({what})")
                continue
            judged += 1
            if not met:
                missed.append(f"{r['row']} ({what} {r[f'{what}_ratio']:.3g}, target <= {r[f'{what}_target']:g})")
    return missed, judged, unjudged


def verdict_lines(ratio_rows, ratio_line, gpu_records, memory_records=()):
    """``(lines, missed)``: the summary of the targets this run judged (``ratio_rows``: the ratio rows' records, with
    ``ratio_line`` their verdict line; ``gpu_records``: the GPU rows'; ``memory_records``: the peak memory against
    ``P N n_L`` entries, ``report.memory_records``), and whether any was missed. Ratio rows that could not be measured
    at all (``ratio_line`` without records) count as missed; a comparison whose peer cannot run here is not judged."""
    from . import report

    lines, missed = [], False
    memory_line, memory_missed = report.memory_verdict(list(memory_records))
    if memory_line is not None:
        lines.append(memory_line)
        missed = memory_missed
    if ratio_line is not None:
        lines.append(ratio_line)
        missed = (
            missed
            or ratio_rows is None
            or any(r["bound"] is not None and r.get("judged", True) and not r["passed"] for r in ratio_rows)
        )
    if gpu_records:
        gpu_missed, judged, unjudged = gpu_targets(gpu_records)
        lines.append(
            f"{len(gpu_missed)} of {judged} GPU row targets miss: {'; '.join(gpu_missed)}"
            if gpu_missed
            else f"all {judged} GPU row targets judged are met"
        )
        if unjudged:
            lines.append(f"GPU row targets not judged (a point missing or out of memory): {'; '.join(unjudged)}")
        missed = missed or bool(gpu_missed)
    if ratio_line is None and not gpu_records:
        lines.append("targets: no ratio row judged in this run (the ratio rows were skipped)")
    return lines, missed


def run(args, engines, dtype, device, device_note, session):
    from . import gpu_rows, outdir, peers, results, timing
    from .machine import machine_info

    threads = args.threads or timing.default_threads()
    peer_names = [] if args.no_peers else [name for name in peers.PEERS if peers.available(name) is None]
    missing_peers = {name: peers.available(name) for name in peers.PEERS if name not in peer_names}
    settings = run_settings(args, engines, peer_names, dtype, device, device_note, threads)
    printed = session.printed

    def say(text=""):
        """Print ``text`` and keep it for ``output.txt``."""
        print(text, flush=True)
        printed.append(text)

    say(
        f"device: {device} ({device_note}); dtype: {dtype}; engines: {', '.join(engines)}; "
        f"peers: {', '.join(peer_names) or 'none'}"
    )
    for name, reason in missing_peers.items():
        if not args.no_peers:
            say(f"  peer {name} left out: {reason}")
    previous = outdir.resumed_points(session.folder, settings if args.resume else None, say)
    # Failed points are measured again on --resume (an engine may have gained the function since).
    kept = [p for p in previous if p.get("status") in ("ok", "skipped")]
    started = time.perf_counter()
    with timing.pinned_threads(threads):
        machine = machine_info(device, threads)
        points, left_out = sweep_phase(
            args, engines, peer_names, device, dtype, threads, settings, session, machine, kept
        )
        sweep_s = time.perf_counter() - started
        ratio_rows, ratio_note, ratio_line = ratio_phase(args, threads)
    elapsed = time.perf_counter() - started
    settings.update(elapsed_s=elapsed, sweep_s=sweep_s, load_average_1_5_15_at_end=list(os.getloadavg()))
    if ratio_rows is not None:
        settings["ratios"] = ratio_rows
    gpu_records = [] if args.quick else gpu_rows.records(points, device)  # a quick run stops below their sizes
    if gpu_records:
        settings["gpu_rows"] = gpu_records
    from . import report

    memory_records = report.memory_records(points)
    if memory_records:
        settings["peak_memory"] = memory_records
    verdicts, missed = verdict_lines(ratio_rows, ratio_line, gpu_records, memory_records)
    settings["targets_missed"] = missed
    session.remember(machine, settings, points)
    session.save(machine, settings, points)
    print("plots: writing the time and memory figures (a few seconds)", file=sys.stderr, flush=True)
    written = session.write_plots(points, f"{device}, {dtype}", device)
    for line in (
        summary_lines(
            points, ratio_note, threads, elapsed, sweep_s, ratio_rows is not None, gpu_records, dtype, left_out
        )
        + verdicts
    ):
        say(line)
    report_path = os.path.join(args.out, results.REPORT_NAME)
    say(
        f"wrote {os.path.join(args.out, results.JSON_NAME)}, {os.path.join(args.out, results.CSV_NAME)}, "
        + ", ".join(written + [report_path])
    )
    session.write_report("\n".join(printed) + "\n")
    return EXIT_TARGET_MISSED if missed else 0


def sweep_phase(args, engines, peer_names, device, dtype, threads, settings, session, machine, kept):
    """Measure every planned point not in ``kept`` (points of an earlier run), with a progress bar, then measure
    again the points far off their neighbours' trend. ``(points, left_out)``: every point, ``kept`` ones included, one
    per key, and ``{quantity: [engines]}`` left out because the engine has no function for it."""
    from . import plan, progress, report, results, sweep

    session.remember(machine, settings, list(kept))

    def save(points):
        # Remembered before the write: a signal between the two then finds the final write's points at least as
        # new as the file's (the other order let a signal right after the first point's write erase that point).
        session.remember(machine, settings, kept + points)
        session.save(machine, settings, kept + points)

    runner = sweep.Runner(engines + peer_names, device, dtype, threads, settings, save, done=[p["key"] for p in kept])
    items = plan.plan(
        engines, quick=args.quick, quantities=args.quantities, peers=peer_names, device=device, provides=runner.provides
    )
    left_out = plan.left_out(engines, args.quantities, runner.provides)
    groups = [
        ((s.name, quantity), s.n_params(value), runner.pending(s, value, quantity, names))
        for s, value, quantity, names in items
    ]
    estimate = progress.SeriesEstimate(groups, lambda key: report.expected_slope(key[1], key[0]))
    with progress.Progress("benchmarks", sum(len(names) for *_, names in items), estimate) as bar:
        runner.progress = bar
        sweep.run(items, runner, bar)
        points = sweep.remeasure_outliers(kept + runner.points, runner, report.expected_slope)
    return results.unique_points(points), left_out


def ratio_phase(args, threads):
    """``(records or None, the text to print, the verdict line or None)``: the ratio rows on ``threads`` threads, with
    their own progress bar, or why they were skipped."""
    from . import ratios

    if args.no_ratios or args.quick:
        why = "--no-ratios" if args.no_ratios else "--quick leaves them out; run python -m benchmarks.ratios --quick"
        return None, f"  skipped ({why})", None
    print(
        f"ratio rows: {len(ratios.ROWS)} rows, each peer timed against manual in interleaved pairs",
        file=sys.stderr,
        flush=True,
    )
    from . import memory

    memory.settle_allocator()  # the rows are timed as in python -m benchmarks.ratios, a process that measured no peak
    try:
        measured, settings = ratios.run(quick=False, threads=threads, use_peers=not args.no_peers)
    except Exception as exc:  # noqa: BLE001 - the sweep's own results still print
        return None, f"  failed: {type(exc).__name__}: {exc}", f"the ratio rows could not be measured: {exc}"
    return ratios.as_records(measured), ratios.format_table(measured, settings), ratios.verdict_line(measured)


if __name__ == "__main__":
    sys.exit(main())
