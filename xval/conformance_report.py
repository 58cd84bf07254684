"""The conformance matrix (``xval.conformance.Matrix``) as Markdown: a headline, an overview of library x quantity
(worst over the case table), then per library a table of case family x quantity with numbered notes (the library's
own refusals, its conventions, what failed and why). Each cell shows float64, then float32."""

import json
import os

from . import contract
from .conformance import CONTRACT, CONVENTION, ESTIMATOR, to_json

MARKS = {"fail": "✗", "error": "✗ raised", "unsupported": "unsup.", "not checked": "n/c", "convention": "conv."}
ORDER = ("fail", "error", "unsupported", "not checked", "convention")


def _number(value, kind):
    if value is None:
        return "?"
    if kind == ESTIMATOR:
        return f"z {value:.1f}"
    return "0" if value == 0 else f"{value:.0e}" if value < 1e-3 else f"{value:.2g}"


def _worst(entries, status):
    errors = [entry.error for entry in entries if entry.status == status and entry.error is not None]
    return max(errors) if errors else None


def _group(entries, *keys):
    grouped = {}
    for entry in entries:
        grouped.setdefault(tuple(getattr(entry, key) for key in keys), []).append(entry)
    return grouped


def _quantity_order(library, entries):
    known = list(contract.QUANTITIES) + list(contract.PENDING)
    names = list(dict.fromkeys(entry.quantity for entry in entries))
    kinds = {entry.quantity: entry.kind for entry in entries}
    rank = {CONTRACT: 0, CONVENTION: 0, ESTIMATOR: 1}
    return sorted(names, key=lambda name: (rank[kinds[name]], known.index(name) if name in known else len(known), name))


class _Notes:
    """Numbered notes of one library: one per distinct (status, quantity for failures, detail)."""

    def __init__(self):
        self.items = {}

    def mark(self, entry, detail=None):
        detail = " ".join((entry.detail if detail is None else detail).split())
        if len(detail) > 400:
            detail = detail[:400] + " ..."
        by_quantity = entry.status in ("fail", "error", "not checked", "pass")
        key = (entry.status, entry.quantity if by_quantity else "", detail)
        if key not in self.items:
            self.items[key] = (len(self.items) + 1, [])
        number, cases = self.items[key]
        if entry.case not in cases:
            cases.append(entry.case)
        return number

    def lines(self):
        out = []
        for (status, quantity, detail), (number, cases) in self.items.items():
            where = f"{quantity}, " if quantity else ""
            shown = ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
            out.append(
                f"{number}. {status} ({where}{len(cases)} case{'s' if len(cases) > 1 else ''}: {shown}): {detail}"
            )
        return out


FLOOR_NOTE = (
    "passed on the arbiter's verdict: the error exceeds the tolerance, but every entry is within the "
    "rounding floor of its formula (digits float64 cannot resolve here, lost by the references too; a "
    "precision loss, not a bug)"
)


def _passed(passed, notes, tolerance):
    """The worst passing error, with the note of a pass the arbiter granted (an error above the tolerance)."""
    kind = passed[0].kind
    text = _number(_worst(passed, "pass"), kind)
    floored = [entry for entry in passed if kind == CONTRACT and entry.error is not None and entry.error > tolerance]
    if floored:
        numbers = sorted({notes.mark(entry, FLOOR_NOTE) for entry in floored})
        text += f" [{', '.join(map(str, numbers))}]"
    return text


def _cell(entries, notes, total, tolerance):
    """One dtype's result of one (library, quantity, family): the worst passing error when all pass, else each
    status with its count and note number."""
    by_status = _group(entries, "status")
    kind = entries[0].kind
    passed = by_status.get(("pass",), [])
    if len(passed) == len(entries) == total:
        return _passed(passed, notes, tolerance)
    parts = []
    if passed:
        parts.append(f"{_passed(passed, notes, tolerance)} ({len(passed)}/{total})")
    for status in ORDER:
        group = by_status.get((status,), [])
        if not group:
            continue
        numbers = sorted({notes.mark(entry) for entry in group})
        error = f" {_number(_worst(group, status), kind)}" if status == "fail" else ""
        count = f" {len(group)}/{total}" if len(group) < total else ""
        parts.append(f"{MARKS[status]}{error}{count} [{', '.join(map(str, numbers))}]")
    return ", ".join(parts)


def _library_section(matrix, library):
    entries = [entry for entry in matrix.entries if entry.library == library.name]
    title = f"## {library.name} {library.version}".rstrip()
    if not entries:
        return [title, "", "No entries (no case run).", ""]
    notes = _Notes()
    quantities = _quantity_order(library, entries)
    cells = _group(entries, "family", "quantity", "dtype")
    lines = [
        title,
        "",
        "| family (cases) | " + " | ".join(f"`{name}`" for name in quantities) + " |",
        "| --- |" + " --- |" * len(quantities),
    ]
    for name, case_ids in matrix.families.items():
        row = []
        for quantity in quantities:
            shown = [
                _cell(cells[(name, quantity, dtype)], notes, len(case_ids), matrix.tolerances[dtype])
                if (name, quantity, dtype) in cells
                else "-"
                for dtype in matrix.dtypes
            ]
            row.append(" / ".join(shown))
        lines.append(f"| {name} ({len(case_ids)}) | " + " | ".join(row) + " |")
    lines.append("")
    lines += notes.lines()
    lines.append("")
    return lines


def _overview_cell(entries, dtype):
    chosen = [entry for entry in entries if entry.dtype == dtype]
    if not chosen:
        return "-"
    kind, total = chosen[0].kind, len(chosen)
    counts = {
        status: sum(entry.status == status for entry in chosen)
        for status in ("pass", "fail", "error", "unsupported", "not checked", "convention")
    }
    bad = counts["fail"] + counts["error"]
    if bad:
        return f"✗ {bad}/{total}"
    if counts["convention"]:
        return "conv."
    if counts["pass"] == total:
        return _number(_worst(chosen, "pass"), kind)
    if counts["pass"]:
        return f"{_number(_worst(chosen, 'pass'), kind)} ({counts['pass']}/{total})"
    return "unsup." if counts["unsupported"] == total else "n/c"


def _pairs(matrix):
    """``{(library, quantity): entries}`` over every case and dtype."""
    return _group(matrix.entries, "library", "quantity")


def _count(items, one, many):
    return f"{len(items)} {one if len(items) == 1 else many}"


def headline(matrix):
    """The matrix's figures in a few sentences."""
    pairs = _pairs(matrix)
    judged = {key: group for key, group in pairs.items() if group[0].kind != CONVENTION}
    failing = sorted(
        f"{library} {quantity}"
        for (library, quantity), group in judged.items()
        if any(entry.status in ("fail", "error") for entry in group)
    )
    agreeing = [
        group
        for key, group in judged.items()
        if f"{key[0]} {key[1]}" not in failing and any(entry.status == "pass" for entry in group)
    ]
    partly = sum(1 for group in agreeing if any(entry.status != "pass" for entry in group))
    refused = [key for key, group in judged.items() if all(entry.status == "unsupported" for entry in group)]
    unjudged = len(judged) - len(failing) - len(agreeing) - len(refused)
    conventions = [key for key, group in pairs.items() if group[0].kind == CONVENTION]
    within = {
        dtype: [
            entry
            for entry in matrix.entries
            if entry.dtype == dtype and entry.kind == CONTRACT and entry.status == "pass" and entry.error is not None
        ]
        for dtype in matrix.dtypes
    }
    worst = {
        dtype: max((e.error for e in within[dtype] if e.error <= matrix.tolerances[dtype]), default=None)
        for dtype in matrix.dtypes
    }
    floored = sum(1 for dtype in matrix.dtypes for e in within[dtype] if e.error > matrix.tolerances[dtype])
    checked = matrix.checked()
    missing = [library.name for library in matrix.libraries if library.status != "checked"]
    cases = sum(len(ids) for ids in matrix.families.values())
    text = (
        f"{_count(checked, 'library', 'libraries')} ("
        f"{', '.join(f'{lib.name} {lib.version}'.strip() for lib in checked)}) on "
        f"{cases} case{'s' if cases != 1 else ''} in {_count(matrix.families, 'family', 'families')}, "
        f"{' and '.join(matrix.dtypes)}, "
        f"{len(judged)} (library, quantity) pairs. {len(agreeing)} agree with the exact value wherever they were "
        f"compared ({partly} of them {'refuses' if partly == 1 else 'refuse'} some cases or "
        f"{'is' if partly == 1 else 'are'} too noisy to judge on some); "
        f"{_count(failing, 'fails', 'fail')} somewhere ({', '.join(failing) or 'none'}: each a finding in "
        f'docs/findings.md, "The field\'s libraries"); {_count(refused, "is", "are")} refused by the library '
        f"on every case"
        + (f"; {unjudged} could not be judged anywhere" if unjudged else "")
        + f"; {_count(conventions, 'is', 'are')} computed only in the library's own convention. Worst error "
        "of a pass: "
        + ", ".join(f"{_number(worst[dtype], CONTRACT)} in {dtype}" for dtype in matrix.dtypes)
        + (f" ({floored} more passed on the arbiter's verdict, below the rounding floor)" if floored else "")
        + "."
    )
    if missing:
        text += f" Not run: {', '.join(missing)} (see below)."
    return text


def markdown(matrix):
    """The whole ``docs/conformance.md``."""
    cases = sum(len(ids) for ids in matrix.families.values())
    lines = [
        "# Conformance of the field's curvature libraries",
        "",
        "<!-- Written by `python -m xval conformance`; regenerate rather than edit. -->",
        "",
        "Each library runs through its adapter in `peers/` (the library's conventions mapped onto the contract "
        "in code) on the suite's case table, every call of every quantity it computes compared with the "
        f"references ({', '.join(matrix.against)}); a disagreement is judged by the arbiter "
        "(`python -m xval check <library>` shows one library's rows).",
        "",
        "**Headline.** " + headline(matrix),
        "",
        "Cells: float64 / float32. A number is the worst relative Frobenius error over the family's cases "
        "against the arbiter where it computes the quantity, else against the references that do "
        f"(tolerance {', '.join(f'{t:g} in {d}' for d, t in matrix.tolerances.items())}); for a stochastic "
        f"estimator (`mc_*`, `hutchinson_*`, ...) `z` is the distance of its mean over {matrix.seeds} seeds from "
        "the exact value, in standard errors (it fails beyond 5). `✗` failed (with the error), `✗ raised` "
        "raised an error (a number above the tolerance without `✗` passed on the arbiter's verdict, its note "
        "says so), `unsup.` the library refuses (its own message in the note), `n/c` not checked (no "
        "reference computed it, or an estimate too noisy to judge), `conv.` computed only in the library's own "
        "form (the note says what differs), `k/n` on k of the family's n cases, `[i]` the library's note i, "
        "`-` not run.",
        "",
        "## Overview (worst over the case table)",
        "",
    ]
    libraries = matrix.checked()
    pairs = _pairs(matrix)
    order = _quantity_order(None, matrix.entries)
    lines.append("| quantity | " + " | ".join(f"{lib.name} {lib.version}".strip() for lib in libraries) + " |")
    lines.append("| --- |" + " --- |" * len(libraries))
    for quantity in order:
        row = [
            " / ".join(_overview_cell(pairs.get((lib.name, quantity), []), dtype) for dtype in matrix.dtypes)
            if (lib.name, quantity) in pairs
            else ""
            for lib in libraries
        ]
        lines.append(f"| `{quantity}` | " + " | ".join(row) + " |")
    lines += ["", f"Families ({cases} cases):", ""]
    lines += [f"- {name}: {', '.join(ids)}" for name, ids in matrix.families.items()]
    lines.append("")
    for library in libraries:
        lines += _library_section(matrix, library)
    others = [library for library in matrix.libraries if library.status != "checked"]
    if others:
        lines += ["## Not run", ""] + [f"- {library.name}: {library.status}: {library.note}" for library in others]
    return "\n".join(lines).rstrip("\n") + "\n"


def write(matrix, markdown_path, json_path):
    """Both files, each written atomically (a temporary file renamed into place)."""
    for path, text in (
        (markdown_path, markdown(matrix)),
        (json_path, json.dumps(to_json(matrix), indent=1, ensure_ascii=False) + "\n"),
    ):
        if path is None:
            continue
        temporary = f"{path}.tmp{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
