"""``python -m xval check ENGINE``: the whole case table, every quantity the engine implements, against the
references; a table (case x quantity: relative error against each reference, pass/fail) and a one-line summary.

Exit status: 0 when everything the engine implements agrees within the tolerance table, 1 when anything disagrees
or raises, 2 for a usage error (an engine that cannot be found or imported, an unknown quantity, case or dtype).
"""
import json
import os
import sys
from dataclasses import asdict, dataclass, field

from . import cases as case_table, compare, contract, engines, verdict
from .errors import EngineUnavailableError, UnknownNameError, XvalError


@dataclass
class Row:
    """One (case, quantity) of a check: the worst relative error over its calls against each reference (``None``:
    that reference could not compute it), the status (``pass``, ``fail``, ``error``, ``not implemented``) and, for
    a failure, what went wrong."""

    case: str
    quantity: str
    tolerance: float
    errors: dict = field(default_factory=dict)
    status: str = "pass"
    detail: str = ""


@dataclass
class Report:
    engine: str
    against: list
    dtype: str
    rows: list
    notes: list

    @property
    def counts(self):
        tally = {status: 0 for status in ("pass", "fail", "error", "not implemented")}
        for row in self.rows:
            tally[row.status] += 1
        return tally

    @property
    def ok(self):
        return self.counts["fail"] == 0 and self.counts["error"] == 0


class _References:
    """The references' results, computed once per (case, reference, call). A reference's blocks come from its full
    Hessian when it has one (one compilation per case for jax instead of one per layer pair)."""

    def __init__(self, modules):
        self.modules = modules
        self._cache = {}

    def value(self, name, problem, call):
        key = (problem.name, name, call.label)
        if key not in self._cache:
            self._cache[key] = self._compute(name, problem, call)
        return self._cache[key]

    def _compute(self, name, problem, call):
        module = self.modules[name]
        try:
            if call.quantity.name == "hessian_block" and contract.QUANTITIES["hessian"].implemented_by(module):
                l, m = call.arguments[-2:]
                full = self.value(name, problem, contract.QUANTITIES["hessian"].calls(problem)[0])
                if isinstance(full, Exception):
                    return full
                slices = problem.net.param_slices
                return full[slices[l], slices[m]]
            if not call.quantity.implemented_by(module):
                return NotImplementedError(f"{name} does not implement {call.quantity.name}")
            return call.evaluate(module)
        except Exception as exc:  # a reference that cannot compute a call: its column says so
            return exc


def _arbitrate(row, label, failing, references, names, problem):
    """The arbiter's verdict on the failing calls of ``row``, in turn, until one finds the engine wrong: then the row
    fails with the arbiter's report; when none does (a reference is wrong, or the difference is below the rounding
    floor) the row passes, the report kept in its detail."""
    for call, ours in failing:
        results = {label: ours}
        for name in names:
            theirs = references.value(name, problem, call)
            if not isinstance(theirs, Exception) and theirs.shape == ours.shape:
                results[name] = theirs
        judged = verdict.judge(call, results, row.tolerance, problem.X.dtype.name)
        if not judged.decided or label in judged.wrong:
            row.detail += "\n      " + judged.text().replace("\n", "\n      ")
            return
        row.detail = f"{call.label}: " + judged.text().replace("\n", "\n      ")
    row.status = "pass"


def _check_row(engine, references, names, problem, quantity, dtype, label="engine"):
    """The ``Row`` of ``quantity`` on ``problem``: every call (every layer pair of a block) against each reference;
    a disagreement is judged by the arbiter (``_arbitrate``)."""
    row = Row(problem.name, quantity.name, quantity.tolerance(dtype))
    if not quantity.implemented_by(engine):
        row.status = "not implemented"
        return row
    failing = []
    for call in quantity.calls(problem, every_block=True):
        try:
            ours = call.evaluate(engine)
        except Exception as exc:
            row.status, row.detail = "error", f"{call.label} raised {type(exc).__name__}: {exc}"
            return row
        for name in names:
            theirs = references.value(name, problem, call)
            if isinstance(theirs, Exception):
                row.errors.setdefault(name, None)
                continue
            if ours.shape != theirs.shape:
                row.status = "fail"
                row.detail = f"{call.label}: shape {ours.shape}, but the contract and {name} give {theirs.shape}"
                row.errors.setdefault(name, None)
                continue
            error = compare.relative_error(ours, theirs)
            if row.errors.get(name) is None or error > row.errors[name]:
                row.errors[name] = error
            if not error <= row.tolerance and (not failing or failing[-1][0] is not call):
                failing.append((call, ours))
            if not error <= row.tolerance and row.status == "pass":
                row.status = "fail"
                worst = "\n      ".join(compare.worst_entries(ours, theirs))
                row.detail = f"{call.label} vs {name}: relative error {error:.3g} > tolerance {row.tolerance:.1g}\n      {worst}"
    if row.status == "fail" and failing:
        _arbitrate(row, label, failing, references, names, problem)
    return row


def _progress(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="checking", unit="check", file=sys.stderr, leave=False, disable=None)


def run_check(engine_spec, against=("manual", "torch", "jax"), quantities=None, cases=None, dtype="float64"):
    """Check the engine ``engine_spec`` on the case table; returns a ``Report``.

    Raises ``UnknownNameError``/``EngineImportError``/``EngineUnavailableError`` for an engine that cannot be used,
    ``UnknownNameError`` for an unknown quantity or case id, ``XvalError`` when no reference can be loaded.
    """
    engine = engines.load(engine_spec)
    quantities = [contract.QUANTITIES[name] if name in contract.QUANTITIES else contract.quantity(name)
                  for name in (quantities or list(contract.QUANTITIES))]
    chosen_cases = case_table.select(cases)
    notes, modules = [], {}
    for name in against:
        try:
            module = engines.load(name)
        except EngineUnavailableError as exc:
            notes.append(f"reference {name!r} skipped: {exc}")
            continue
        if module is engine:
            notes.append(f"reference {name!r} is the engine under check: not compared with itself")
            continue
        modules[engines.label(name)] = module
    if not modules:
        raise XvalError(f"no reference engine could be loaded from --against {','.join(against)}; "
                        + ("; ".join(notes) if notes else "name at least one, e.g. --against manual,torch,jax"))
    references = _References(modules)
    rows = []
    progress = _progress(len(chosen_cases) * len(quantities))
    for case in chosen_cases:
        problem = case_table.problem(case, dtype)
        for quantity in quantities:
            rows.append(_check_row(engine, references, list(modules), problem, quantity, dtype, engines.label(engine_spec)))
            if progress is not None:
                progress.update(1)
    if progress is not None:
        progress.close()
    return Report(engines.label(engine_spec), list(modules), dtype, rows, notes)


def format_report(report):
    """The table (one block of rows per case), the failures with their worst entries, and the one-line summary."""
    names = report.against
    lines = [f"check of engine {report.engine} against {', '.join(names)} ({report.dtype})",
             "cells: relative Frobenius error against each reference, the worst over the calls (every layer pair of a block)"]
    if report.rows:
        lines.append(f"tolerance: {max(row.tolerance for row in report.rows):.0e} for every quantity (xval.compare.TOLERANCES)")
    lines += [f"note: {note}" for note in report.notes]
    header = f"  {'quantity':<21}" + "".join(f" {'vs ' + name:>11}" for name in names) + "  result"
    lines.append(header)
    current = None
    for row in report.rows:
        if row.status == "not implemented":
            continue
        if row.case != current:
            lines.append(row.case)
            current = row.case
        cells = "".join(f" {'n/a' if row.errors.get(name) is None else format(row.errors[name], '.1e'):>11}" for name in names)
        lines.append(f"  {row.quantity:<21}{cells}  {row.status if row.status == 'pass' else row.status.upper()}")
    failures = [row for row in report.rows if row.status in ("fail", "error")]
    if failures:
        lines.append("")
        lines.append("failures:")
        lines += [f"  {row.case} {row.quantity}: {row.detail}" for row in failures]
    arbitrated = [row for row in report.rows if row.status == "pass" and row.detail]
    if arbitrated:
        lines += ["", "passed on the arbiter's verdict (the engine is right, or the difference is below the rounding floor):"]
        lines += [f"  {row.case} {row.quantity}: {row.detail}" for row in arbitrated]
    counts = report.counts
    missing = sorted({row.quantity for row in report.rows if row.status == "not implemented"},
                     key=list(contract.QUANTITIES).index)
    failed_quantities = sorted({row.quantity for row in failures}, key=list(contract.QUANTITIES).index)
    checked = counts["pass"] + counts["fail"] + counts["error"]
    summary = (f"{'FAIL' if failures else 'OK'}: {checked} checks, {counts['pass']} passed, "
               f"{counts['fail'] + counts['error']} failed")
    if failed_quantities:
        summary += f" ({', '.join(failed_quantities)})"
    if missing:
        summary += f"; not implemented (skipped): {', '.join(missing)}"
    lines += ["", summary]
    return "\n".join(lines)


def write_json(report, path):
    """The report as JSON at ``path``, written atomically (a temporary file renamed into place)."""
    payload = {"engine": report.engine, "against": report.against, "dtype": report.dtype, "notes": report.notes,
               "ok": report.ok, "counts": report.counts, "rows": [asdict(row) for row in report.rows]}
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=1)
    os.replace(temporary, path)
