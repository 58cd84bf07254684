"""``python -m xval check ENGINE``: check an engine (a built-in or registered name, a module name or a ``.py`` file)
against the references on the whole case table. ``python -m xval cases`` lists the case ids."""
import argparse
import sys

from . import cases as case_table, contract
from .check import format_report, run_check, write_json
from .errors import XvalError


def _comma_list(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def parser():
    main = argparse.ArgumentParser(prog="python -m xval", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True, metavar="{check,cases}")
    check = commands.add_parser(
        "check", help="check an engine against the references on the case table",
        description="Run every case of the table and every quantity ENGINE implements against the references; print "
                    "a table and a summary. Exit 0: all agree; 1: a disagreement or an error; 2: a usage error.",
    )
    check.add_argument("engine", help="a built-in or registered name (manual, torch, jax, arbiter), a module name "
                                      "(mypkg.engine) or a path to a .py file")
    check.add_argument("--against", default="manual,torch,jax", type=_comma_list,
                       help="comma list of reference engines (default manual,torch,jax)")
    check.add_argument("--quantities", type=_comma_list,
                       help=f"comma list, a subset of: {', '.join(contract.QUANTITIES)} (default all)")
    check.add_argument("--cases", type=_comma_list, help="comma list of case ids (python -m xval cases lists them; default all)")
    check.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="default float64")
    check.add_argument("--json", metavar="FILE", help="also write every row as JSON to FILE")
    commands.add_parser("cases", help="list the case ids of the table")
    return main


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "cases":
        for case in case_table.CASES:
            print(case_table.case_id(case))
        return 0
    unknown = [name for name in args.quantities or [] if name not in contract.QUANTITIES]
    if unknown:
        print(f"error: --quantities names unknown quantity {unknown[0]!r}; valid quantities are: "
              f"{', '.join(contract.QUANTITIES)}", file=sys.stderr)
        return 2
    try:
        report = run_check(args.engine, args.against, args.quantities, args.cases, args.dtype)
    except XvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
