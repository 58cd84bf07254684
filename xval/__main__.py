"""``python -m xval check ENGINE``: check an engine (a built-in or registered name, a module name or a ``.py`` file)
against the references on the whole case table. ``python -m xval cases`` lists the case ids."""
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

EXIT_CODES = (f"Exit status: 0 every implemented quantity was compared and agrees; 1 a disagreement, or the engine "
              f"raised, crashed or ran past its time limit; {EXIT_USAGE} a usage error (an unknown engine, quantity or "
              f"case, an engine that cannot be imported, a bad XVAL_* setting); {EXIT_NOT_CHECKED} nothing disagrees "
              f"but something was not compared (no reference produced a value, or the engine implements none of the "
              f"requested quantities); {EXIT_INTERRUPTED} interrupted (Ctrl-C).")


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
    commands = main.add_subparsers(dest="command", required=True, metavar="{check,cases}")
    check = commands.add_parser(
        "check", help="check an engine against the references on the case table",
        description="Run every case of the table and every quantity ENGINE implements against the references; print "
                    "one verdict line per case as it finishes, then the failures (each entry named in the network's "
                    "terms: layer 0, W[1, 1]), a diagnosis and a summary. An engine other than the built-in ones runs "
                    "in a child process, on read-only copies of its inputs, each call with a time limit. "
                    + EXIT_CODES,
    )
    check.add_argument("engine", help="a built-in or registered name (manual, torch, jax, arbiter), a module name "
                                      "(mypkg.engine) or a path to a .py file")
    check.add_argument("--against", default="manual,torch,jax", type=_comma_list,
                       help="comma list of reference engines (default manual,torch,jax)")
    check.add_argument("--quantities", type=_comma_list,
                       help=f"comma list, a subset of: {', '.join({**contract.QUANTITIES, **contract.PENDING})} "
                            "(default: every released quantity, and every pending one the engine implements)")
    check.add_argument("--cases", type=_comma_list, help="comma list of case ids (python -m xval cases lists them; default all)")
    check.add_argument("--dtype", choices=("float64", "float32"),
                       help="default: XVAL_DTYPE when set, else float64 (an explicit --dtype wins)")
    check.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help=f"time limit of each call of an engine run in its own process, and of its import "
                            f"(default {DEFAULT_TIMEOUT:g}); a call past it is that engine's failure")
    check.add_argument("--verbose", action="store_true",
                       help="every row's error against each reference, every failure's worst entries and the "
                            "arbiter's report (default: one line per case and the worst entry per failing quantity)")
    check.add_argument("--json", metavar="FILE", help="also write every row, entry and reason as JSON to FILE")
    commands.add_parser("cases", help="list the case ids of the table")
    return main


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
        self.bar = tqdm(total=report.total_cases, desc="cases", unit="case", file=sys.stderr, leave=False,
                        disable=None, dynamic_ncols=True)
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
        print(f"error: --quantities names unknown quantity {unknown[0]!r}; valid quantities are: "
              f"{', '.join(known)}", file=sys.stderr)
        return EXIT_USAGE
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        print(f"error: --json {args.json}: the folder {os.path.dirname(os.path.abspath(args.json))} does not exist; "
              "create it or name a file in an existing folder", file=sys.stderr)
        return EXIT_USAGE
    printer = _Printer(args.verbose)
    try:
        report = run_check(args.engine, args.against, args.quantities, args.cases, args.dtype, args.timeout,
                           on_start=printer.start, on_case=printer.case, on_row=printer.row)
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


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "cases":
        for case in case_table.CASES:
            print(case_table.case_id(case))
        return 0
    try:
        return _check(args)
    except KeyboardInterrupt:
        print("\ninterrupted: the check stopped before it finished, so there is no verdict", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # python -m xval check ... | head: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
