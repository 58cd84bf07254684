"""``python -m xval check ENGINE``: check an engine (a built-in or registered name, a module name or a ``.py`` file)
against the references on the whole case table. ``python -m xval conformance``: the field's curvature libraries (or
yours) over the case table in float64 and float32, written as a matrix (docs/conformance.md and its JSON twin).
``python -m xval cases`` lists the case ids."""

import sys

from .importpath import stdlib_first

# python -m puts the current folder first on the import path: a file there named like a standard-library module (an
# engine called json.py) would be imported in the module's place by whatever imports it next.
sys.path[:] = stdlib_first(sys.path)

import argparse  # noqa: E402
import os  # noqa: E402

from . import cases as case_table, contract  # noqa: E402
from . import report as report_text  # noqa: E402
from .check import EXIT_INTERRUPTED, EXIT_NOT_CHECKED, EXIT_USAGE, run_check, write_json  # noqa: E402
from .errors import XvalError  # noqa: E402
from .isolation import DEFAULT_TIMEOUT  # noqa: E402

EXIT_CODES = (
    f"Exit status: 0 every implemented quantity was compared and agrees; 1 a disagreement, or the engine "
    f"raised, crashed or ran past its time limit; {EXIT_USAGE} a usage error (an unknown engine, quantity or "
    f"case, an engine that cannot be imported, a bad XVAL_* setting); {EXIT_NOT_CHECKED} nothing disagrees "
    f"but something was not compared (no reference produced a value, or the engine implements none of the "
    f"requested quantities); {EXIT_INTERRUPTED} interrupted (Ctrl-C)."
)


def _comma_list(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0 (e.g. --timeout 60)")
    return value


def parser():
    main = argparse.ArgumentParser(prog="python -m xval", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True, metavar="{check,conformance,cases}")
    check = commands.add_parser(
        "check",
        help="check an engine against the references on the case table",
        description="Run every case of the table and every quantity ENGINE implements against the references; print "
        "one verdict line per case as it finishes, then the failures (each entry named in the network's "
        "terms: layer 0, W[1, 1]), a diagnosis and a summary. An engine other than the built-in ones runs "
        "in a child process, on read-only copies of its inputs, each call with a time limit. " + EXIT_CODES,
    )
    check.add_argument(
        "engine",
        help="a built-in or registered name (manual, torch, jax, arbiter), a module name "
        "(mypkg.engine) or a path to a .py file",
    )
    check.add_argument(
        "--against",
        default="manual,torch,jax",
        type=_comma_list,
        help="comma list of reference engines (default manual,torch,jax)",
    )
    check.add_argument(
        "--quantities",
        type=_comma_list,
        help=f"comma list, a subset of: {', '.join({**contract.QUANTITIES, **contract.PENDING})} "
        "(default: every released quantity, and every pending one the engine implements)",
    )
    check.add_argument(
        "--cases", type=_comma_list, help="comma list of case ids (python -m xval cases lists them; default all)"
    )
    check.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        help="default: XVAL_DTYPE when set, else float64 (an explicit --dtype wins)",
    )
    check.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit of each call of an engine run in its own process, and of its import "
        f"(default {DEFAULT_TIMEOUT:g}); a call past it is that engine's failure",
    )
    check.add_argument(
        "--verbose",
        action="store_true",
        help="every row's error against each reference, every failure's worst entries and the "
        "arbiter's report (default: one line per case and the worst entry per failing quantity)",
    )
    check.add_argument("--json", metavar="FILE", help="also write every row, entry and reason as JSON to FILE")
    _conformance_parser(commands)
    commands.add_parser("cases", help="list the case ids of the table")
    return main


def _conformance_parser(commands):
    from . import conformance, engines, estimators

    matrix = commands.add_parser(
        "conformance",
        help="run the field's curvature libraries over the case table and write the matrix",
        description="Run every installed library (default: " + ", ".join(engines.peer_names()) + ") over the case "
        "table in float64 and float32: every quantity it computes against the references (the arbiter "
        "where it answers), its stochastic estimators as statistics over seeds, and write the matrix of "
        "library x quantity x case family as Markdown and JSON. A library that is not installed is "
        "listed with its install line. Exit status: 0 when it was written, 2 for a usage error, "
        f"{EXIT_INTERRUPTED} when interrupted (nothing is written then). Failures in the matrix do not "
        "change the exit status: the matrix reports them.",
    )
    matrix.add_argument(
        "--libraries",
        type=_comma_list,
        help="comma list of engines: peer names, module names (mypkg.engine) or .py files (default: every peer)",
    )
    matrix.add_argument("--cases", type=_comma_list, help="comma list of case ids (default all)")
    matrix.add_argument(
        "--dtypes",
        type=_comma_list,
        default=list(conformance.DTYPES),
        help="comma list of float64, float32 (default both)",
    )
    matrix.add_argument(
        "--against",
        type=_comma_list,
        default=list(conformance.AGAINST),
        help=f"comma list of references (default {','.join(conformance.AGAINST)})",
    )
    matrix.add_argument(
        "--seeds",
        type=int,
        default=estimators.SEEDS,
        help=f"runs of each stochastic estimator (default {estimators.SEEDS})",
    )
    matrix.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit of each call (default {DEFAULT_TIMEOUT:g})",
    )
    matrix.add_argument(
        "--output",
        default=os.path.join("docs", "conformance.md"),
        metavar="FILE",
        help="the Markdown matrix (default docs/conformance.md)",
    )
    matrix.add_argument(
        "--json",
        default=os.path.join("docs", "conformance.json"),
        metavar="FILE",
        help="its JSON twin (default docs/conformance.json)",
    )


class _Printer:
    """Prints the check as it goes: the header once the references are loaded, each case's lines as it finishes
    (flushed, so that a pipe sees them at once), and on a terminal a progress line on stderr (cases done of the
    total, elapsed, the estimate of what is left)."""

    def __init__(self, verbose):
        self.verbose, self.bar = verbose, None

    def write(self, lines):
        for line in lines:
            if self.bar is not None:
                self.bar.write(line, file=sys.stdout)
            else:
                print(line)
        sys.stdout.flush()

    def start(self, report):
        self.write(report_text.header(report, self.verbose))
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(
            total=report.total_cases,
            desc="cases",
            unit="case",
            file=sys.stderr,
            leave=False,
            disable=None,
            dynamic_ncols=True,
        )
        if self.bar.disable:  # not a terminal: the case lines are the progress
            self.bar = None

    def row(self, report, index, row):
        if self.bar is not None:
            self.bar.set_postfix_str(f"{row.case} {row.quantity}", refresh=True)

    def case(self, report, index, rows):
        self.write(report_text.case_lines(report, index, rows, self.verbose))
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _check(args):
    known = {**contract.QUANTITIES, **contract.PENDING}
    unknown = [name for name in args.quantities or [] if name not in known]
    if unknown:
        print(
            f"error: --quantities names unknown quantity {unknown[0]!r}; valid quantities are: {', '.join(known)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        print(
            f"error: --json {args.json}: the folder {os.path.dirname(os.path.abspath(args.json))} does not exist; "
            "create it or name a file in an existing folder",
            file=sys.stderr,
        )
        return EXIT_USAGE
    printer = _Printer(args.verbose)
    try:
        report = run_check(
            args.engine,
            args.against,
            args.quantities,
            args.cases,
            args.dtype,
            args.timeout,
            on_start=printer.start,
            on_case=printer.case,
            on_row=printer.row,
        )
    except XvalError as exc:
        printer.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        printer.close()
    printer.write(report_text.tail(report, args.verbose))
    if args.json:
        write_json(report, args.json)
    return report.exit_code


class _Progress:
    """The conformance run as it goes: a line per (dtype, case, library) on stdout, and on a terminal a progress bar
    on stderr (steps done, elapsed, the estimate of what is left)."""

    def __init__(self):
        self.bar = None

    def start(self, matrix, total):
        for library in matrix.libraries:
            state = f"{library.version} " if library.version else ""
            print(f"{library.name}: {state}{library.status}" + (f" ({library.note})" if library.note else ""))
        print(f"references: {', '.join(matrix.against)}; {total} steps (dtype x case x library)", flush=True)
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(
            total=total, desc="conformance", unit="step", file=sys.stderr, leave=False, disable=None, dynamic_ncols=True
        )
        if self.bar.disable:
            self.bar = None

    def entries(self, matrix, step, dtype, case, library, entries):
        counts = {}
        for entry in entries:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        bad = [f"{entry.quantity} {entry.status}" for entry in entries if entry.status in ("fail", "error")]
        line = (
            f"{dtype} {case} {library.name}: "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
            + (f" ({'; '.join(bad)})" if bad else "")
        )
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
            self.bar.update(1)
        else:
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _conformance(args):
    from . import conformance, conformance_report

    for path, option in ((args.output, "--output"), (args.json, "--json")):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            print(
                f"error: {option} {path}: the folder {folder} does not exist; create it or name a file in an "
                "existing folder",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if args.seeds < 2:
        print(f"error: --seeds {args.seeds}: a statistic needs at least 2 runs (default 16)", file=sys.stderr)
        return EXIT_USAGE
    progress = _Progress()
    try:
        matrix = conformance.run(
            args.libraries,
            args.cases,
            args.dtypes,
            args.against,
            args.seeds,
            args.timeout,
            on_start=progress.start,
            on_entries=progress.entries,
        )
    except XvalError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        progress.close()
    conformance_report.write(matrix, args.output, args.json)
    print(
        "",
        conformance_report.headline(matrix),
        f"written: {args.output}, {args.json} ({matrix.seconds:.0f} s)",
        sep="\n",
    )
    return 0


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "cases":
        for case in case_table.CASES:
            print(case_table.case_id(case))
        return 0
    try:
        return _conformance(args) if args.command == "conformance" else _check(args)
    except KeyboardInterrupt:
        print("\ninterrupted: the check stopped before it finished, so there is no verdict", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # python -m xval check ... | head: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
