"""The text and the JSON of a check (``xval.check.Report``).

By default: a header (engine, references, dtype, tolerance), one verdict line per case, then the failures grouped by
quantity with the worst entry named in the network's terms, what was not checked and why, a diagnosis paragraph
(``xval.diagnosis``) and a one-line summary. ``verbose``: every row's errors against each reference, every failure's
worst entries and the arbiter's report. ``python -m xval check`` prints the same text, a case at a time.
"""

import json
import math
import os
from dataclasses import asdict

from . import contract, diagnosis

OUTCOME_WORDS = {"pass": "OK", "fail": "FAIL", "not checked": "NOT CHECKED"}


def _order(quantities):
    known = list(contract.QUANTITIES) + list(contract.PENDING)
    return sorted(set(quantities), key=lambda name: known.index(name) if name in known else len(known))


def tolerance_line(report):
    tolerances = sorted({contract.quantity(name).tolerance(report.dtype) for name in report.requested})
    shown = ", ".join(f"{t:.0e}" for t in tolerances) or "-"
    return f"tolerance: {shown} for every quantity (relative Frobenius error; xval.compare.TOLERANCES)"


def header(report, verbose=False):
    """The lines before the first case: what is checked against what, in which dtype, with which tolerance."""
    lines = [
        f"check of engine {report.engine} against {', '.join(report.against)} ({report.dtype})",
        tolerance_line(report),
    ]
    lines += [f"note: {note}" for note in report.notes]
    if verbose:
        lines.append(
            "cells: relative Frobenius error against each reference, the worst over the calls (every layer "
            "pair of a block)"
        )
        lines.append(f"  {'quantity':<21}" + "".join(f" {'vs ' + name:>11}" for name in report.against) + "  result")
    return lines


def case_verdict(rows):
    """``FAIL hvp; 4 passed``: what one case's rows came to."""
    by_status = {}
    for row in rows:
        by_status.setdefault(row.status, []).append(row.quantity)
    parts = []
    for status, word in (
        ("fail", "FAIL"),
        ("error", "ERROR (raised)"),
        ("not checked", "NOT CHECKED"),
        ("unsupported", "unsupported"),
    ):
        if by_status.get(status):
            parts.append(f"{word} {', '.join(by_status[status])}")
    passed = len(by_status.get("pass", []))
    arbitrated = sum(1 for row in rows if row.status == "pass" and row.detail)
    if passed or not parts:
        parts.append(f"{passed} passed" + (f" ({arbitrated} on the arbiter's verdict)" if arbitrated else ""))
    if not any(row.status != "not implemented" for row in rows):
        parts = ["nothing to compare (no requested quantity implemented)"]
    return "; ".join(parts)


def _cell(row, name):
    value = row.errors.get(name)
    return "n/a" if value is None else format(value, ".1e")


def case_lines(report, index, rows, verbose=False):
    """The lines of one case: its verdict line, or with ``verbose`` its block of rows."""
    total = report.total_cases or len(report.cases)
    case = rows[0].case if rows else "?"
    if not verbose:
        return [f"{index + 1:>{len(str(total))}}/{total} {case}: {case_verdict(rows)}"]
    lines = [f"{case} ({index + 1} of {total})"]
    for row in rows:
        if row.status == "not implemented":
            continue
        cells = "".join(f" {_cell(row, name):>11}" for name in report.against)
        lines.append(f"  {row.quantity:<21}{cells}  {row.status if row.status == 'pass' else row.status.upper()}")
    return lines


def _groups(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row.quantity, []).append(row)
    return [(quantity, groups[quantity]) for quantity in _order(groups)]


def _worst_row(rows):
    def key(row):
        finite = [e for e in row.errors.values() if e is not None]
        return max(finite) if finite else -1.0

    return max(rows, key=key)


def _failure_lines(report, rows):
    """Default: per failing quantity, where it fails, its largest error, the arbiter's verdict and the worst entry."""
    total = len(report.cases)
    lines = []
    for quantity, group in _groups(rows):
        where = f"{quantity} on {'every case' if len(group) == total else f'{len(group)} of {total} cases'}"
        worst = _worst_row(group)
        if not worst.entries:  # it raised, or returned something that is not a result
            lines.append(
                f"  {where}: {worst.detail.splitlines()[0]}" + (f" (first: {group[0].case})" if len(group) > 1 else "")
            )
            continue
        entry = worst.entries[0]
        error = max(e for e in worst.errors.values() if e is not None)
        lines.append(f"  {where}: relative error up to {error:.1e} (vs {entry['reference_name']})")
        if worst.arbiter:
            lines.append(f"    {worst.arbiter}")
        lines.append(
            f"    worst: {entry['entry']} = {entry['engine']:.8g}, {entry['reference_name']} "
            f"{entry['reference']:.8g} ({entry['call']} on {worst.case})"
        )
        if any(row.tensors for row in group):
            lines.append(f"    entries off: {diagnosis.tensors_phrase(report, group)}")
    return lines


def _absent_references(report):
    """A line per reference that gave no value on rows the others compared: those rows have fewer witnesses."""
    compared = [row for row in report.rows if row.status in ("pass", "fail")]
    lines = []
    for name in report.against:
        missing = [row for row in compared if row.errors.get(name) is None and name in row.errors]
        if missing:
            reason = next((row.reasons[name] for row in missing if name in row.reasons), "no value")
            lines.append(
                f"  {name} gave no value on {len(missing)} of {len(compared)} compared rows (first: "
                f"{missing[0].quantity} on {missing[0].case}: {reason})"
            )
    return ["", "compared without some references (the other references decided these rows):"] + lines if lines else []


def tail(report, verbose=False):
    """The lines after the last case: failures, what was not checked, the diagnosis and the summary."""
    lines = []
    failures = [row for row in report.rows if row.status in ("fail", "error")]
    if failures:
        lines += [
            "",
            "failures"
            + ("" if verbose else " (--verbose: every row and entry; --json FILE: all of it):")
            + (":" if verbose else ""),
        ]
        if verbose:
            lines += [f"  {row.case} {row.quantity}: {row.detail}" for row in failures]
        else:
            lines += _failure_lines(report, failures)
    unchecked = [row for row in report.rows if row.status == "not checked"]
    if unchecked:
        lines += ["", "not checked (no reference produced a value, so there is no verdict):"]
        if verbose:
            lines += [f"  {row.case} {row.quantity}: {row.detail}" for row in unchecked]
        else:
            for quantity, group in _groups(unchecked):
                lines.append(
                    f"  {quantity} on {len(group)} case{'s' if len(group) > 1 else ''} "
                    f"(first {group[0].case}): {group[0].detail}"
                )
    refused = [row for row in report.rows if row.status == "unsupported"]
    if refused:
        lines += ["", "unsupported (the engine declined these calls: no verdict, not counted as checks):"]
        for quantity, group in _groups(refused):
            lines.append(
                f"  {quantity} on {len(group)} case{'s' if len(group) > 1 else ''} "
                f"(first {group[0].case}): {group[0].detail}"
            )
    lines += _absent_references(report)
    arbitrated = [row for row in report.rows if row.status == "pass" and row.detail]
    if arbitrated:
        if verbose:
            lines += [
                "",
                "passed on the arbiter's verdict (the engine is right, or the difference is below the rounding floor):",
            ]
            lines += [f"  {row.case} {row.quantity}: {row.detail}" for row in arbitrated]
        else:
            lines += [
                "",
                f"passed on the arbiter's verdict (the engine is right, or the difference is below the "
                f"rounding floor): {', '.join(f'{row.quantity} on {row.case}' for row in arbitrated[:3])}"
                + (f" and {len(arbitrated) - 3} more" if len(arbitrated) > 3 else "")
                + " (--verbose)",
            ]
    paragraph = diagnosis.diagnose(report)
    if paragraph:
        lines += ["", diagnosis.wrap(paragraph)]
    lines += ["", summary(report)]
    return lines


def summary(report):
    """The last line: ``OK``, ``FAIL`` or ``NOT CHECKED``, the counts, and what was skipped or not compared."""
    counts = report.counts
    failures = [row for row in report.rows if row.status in ("fail", "error")]
    missing = _order(row.quantity for row in report.rows if row.status == "not implemented")
    word = OUTCOME_WORDS[report.outcome]
    if not report.checked and not counts["not checked"]:
        implemented = ", ".join(report.implemented) or "none"
        return (
            f"{word}: nothing was compared: {report.engine} implements none of the requested quantities "
            f"({', '.join(report.requested)}); it implements: {implemented}"
        )
    text = f"{word}: {report.checked} checks, {counts['pass']} passed, {len(failures)} failed"
    if failures:
        text += f" ({', '.join(_order(row.quantity for row in failures))})"
    if counts["not checked"]:
        unchecked = _order(row.quantity for row in report.rows if row.status == "not checked")
        text += f"; {counts['not checked']} not checked ({', '.join(unchecked)}: no reference produced a value)"
    if counts["unsupported"]:
        refused = _order(row.quantity for row in report.rows if row.status == "unsupported")
        text += f"; {counts['unsupported']} unsupported ({', '.join(refused)}: the engine declined)"
    if missing:
        text += f"; not implemented (skipped): {', '.join(missing)}"
    return text


def format_report(report, verbose=False):
    """The whole text of a check."""
    lines = header(report, verbose)
    by_case = {}
    for row in report.rows:
        by_case.setdefault(row.case, []).append(row)
    for index, rows in enumerate(by_case.values()):
        lines += case_lines(report, index, rows, verbose)
    return "\n".join(lines + tail(report, verbose))


def _plain(value):
    """JSON has no infinities or NaN: they are written as the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def write_json(report, path):
    """The report as JSON at ``path``, written atomically (a temporary file renamed into place): every row (with its
    named worst entries, the tensors off, the reasons a reference gave no value), the cases, the outcome, the exit
    status, the diagnosis and the summary line. Non-finite errors are written as strings (``"inf"``)."""
    payload = {
        "engine": report.engine,
        "against": report.against,
        "dtype": report.dtype,
        "notes": report.notes,
        "ok": report.ok,
        "outcome": report.outcome,
        "exit_code": report.exit_code,
        "counts": report.counts,
        "timeout": report.timeout,
        "summary": summary(report),
        "diagnosis": diagnosis.diagnose(report),
        "cases": {name: asdict(info) for name, info in report.cases.items()},
        "rows": [asdict(row) for row in report.rows],
    }
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        json.dump(_plain(payload), handle, indent=1)
    os.replace(temporary, path)
