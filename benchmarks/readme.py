"""The docs' generated parts, so that their figures, tables and outputs cannot drift from the code.

``python -m benchmarks.readme`` rewrites, in ``README.md`` and every ``docs/*.md``, the generated parts that drifted
from their sources; ``--check`` only reports them (exit 1). ``tests/test_docs.py`` and ``tests/test_readme.py`` check
the same. A generated part is either

- a section between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``, whose source ``sources()``
  names: a committed baseline file, a ``--help``, a table of the code, a source file, what an example prints;
- an output block: a fenced block whose first line is ``$ python ...``; the rest is what that command prints.

Parts made from committed files and code must equal their source letter for letter. Parts that a run prints on
this machine (an example's output, ``python -m xval check``) are compared by structure and tolerance instead
(``drift``): the same lines with the same words, labels and verdicts; integers (counts, shapes, indices) equal;
every other number equal to 6 significant digits or to its last printed digit, except that two numbers both at or
under ``ROUNDING`` agree (rounding-level errors differ between machines and runs: ``2.7e-16`` and ``3.0e-16`` are the
same finding); measured times and sizes (``12 ms``, ``3 MB``) present and well-formed, of any value. Only a printed
part that drifted beyond that is rewritten (``--force`` rewrites them all).

After a new baseline (``python -m benchmarks --out benchmarks/baseline``), or a change to what a command prints,
run ``python -m benchmarks.readme``.
"""

import argparse
import difflib
import glob
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BASELINE = os.path.join(ROOT, "benchmarks", "baseline")
GPU_BASELINE = os.path.join(BASELINE, "gpu")
SECTION = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)
OUTPUT_BLOCK = re.compile(r"^```\n\$ (?P<command>python [^\n]+)\n(?P<body>.*?)^```", re.M | re.S)
REGENERATE = (
    "If the change is intended (a new output format, new figures, a new baseline), regenerate the docs' "
    "generated parts with: python -m benchmarks.readme (then review the diff). If not, the code now gives "
    "something other than what the docs show, and that change is what to look at."
)

EXACT, PRINTED = "exact", "printed"
ROUNDING = 1e-13  # float64 rounding-level errors sit near 1e-16; the comparison tolerance is 1e-10
RELATIVE = 1e-6
_UNITS = r"min|ms|us|µs|ns|s|h|KiB|MiB|GiB|KB|kB|MB|GB|TB|B"
_TIME_UNITS = {"min", "ms", "us", "µs", "ns", "s", "h"}
# A number standing alone (not part of a name such as N7, 4x8x3, float64 or a version such as 2.13.0), with its unit.
NUMBER = re.compile(
    r"(?<![\w.])(?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
    rf"(?:(?P<space> ?)(?P<unit>{_UNITS})\b)?(?!\w|\.\d)"
)


def documents():
    """The README and every ``docs/*.md``: the files whose generated parts this module keeps."""
    return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


# ---- the sources -----------------------------------------------------------------------------------------------
def _block(text):
    return f"```\n{text.rstrip()}\n```\n"


def command_output(command):
    """What ``command`` (``python ...``, as a user would type it in the repository root) prints on stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    arguments = shlex.split(command)
    done = subprocess.run(
        [sys.executable, *arguments[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    if done.returncode not in (0, 1):  # 1: a check that found a failure, which the docs may show on purpose
        raise RuntimeError(f"`{command}` exited with status {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def example_output(script="compare_engines.py"):
    """What the example prints, run as a user would (a fresh interpreter in the repository root)."""
    return _block(command_output(f"python examples/{script}"))


def source_file(path, language="python"):
    """A file of the repository, as a fenced block."""
    with open(os.path.join(ROOT, path)) as handle:
        return f"```{language}\n{handle.read().rstrip()}\n```\n"


def flag_table(parser):
    """A Markdown table of ``parser``'s options, with their help text as ``--help`` prints it."""
    lines = ["| flag | |", "| --- | --- |"]
    for action in parser._actions:  # argparse keeps no public list of its options
        if isinstance(action, argparse._HelpAction):
            continue
        metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
        flags = ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)
        text = (action.help or "").replace("|", "\\|")
        if action.choices:
            text += f" (one of: {', '.join(action.choices)})"
        lines.append(f"| {flags} | {text} |")
    return "\n".join(lines) + "\n"


def ratio_rows_table():
    """The ratio rows and their targets, from ``benchmarks.ratios.ROWS``."""
    from . import ratios

    lines = ["| row (sigmoid MLP, mse, float64) | peer | target: manual time / peer time |", "| --- | --- | --- |"]
    for row in ratios.ROWS:
        for peer, bound in row.targets.items():
            target = ratios.Result(row.name, peer, 0, 0, 0, 0, 0, bound, False).target
            lines.append(f"| {row.name} | {ratios.peer_label(peer, row)} | {target} |")
    return "\n".join(lines) + "\n"


def baseline_output(folder=BASELINE):
    with open(os.path.join(folder, "output.txt")) as handle:
        lines = handle.read().rstrip("\n").splitlines()
    return _block("\n".join(line for line in lines if not line.startswith("wrote ")))


def conformance_headline(path=os.path.join(ROOT, "docs", "conformance.md")):
    """The headline of the conformance matrix (written by ``python -m xval conformance``), wrapped for the README."""
    import textwrap

    with open(path) as handle:
        line = next((line for line in handle if line.startswith("**Headline.** ")), None)
    if line is None:
        raise RuntimeError(f"{os.path.relpath(path, ROOT)} has no '**Headline.**' line; run python -m xval conformance")
    text = line[len("**Headline.** ") :].strip()
    return textwrap.fill(text, width=116, break_long_words=False, break_on_hyphens=False) + "\n"


def _load(folder):
    with open(os.path.join(folder, "results.json")) as handle:
        return json.load(handle)


def baseline_run():
    """One line: the machine and the duration of the committed baseline."""
    document = _load(BASELINE)
    info, settings = document["machine"], document["settings"]
    cores = info.get("cpu_cores_logical")
    return (
        f"Committed CPU baseline: {info.get('cpu_model', 'unknown CPU')}, {cores} logical cores, "
        f"{settings.get('dtype', 'float64')}, {settings.get('elapsed_s', 0):.0f} s.\n"
    )


def gpu_baseline_run():
    """One line: the GPU, the libraries and manual's array library of the committed GPU baseline, and its duration."""
    document = _load(GPU_BASELINE)
    info, settings = document["machine"], document["settings"]
    versions = info.get("libraries", {})
    manual_on = sorted({p["device"] for p in document["points"] if p["engine"] == "manual"})
    with open(os.path.join(GPU_BASELINE, "machine.txt")) as handle:
        driver = next((line.split(",")[-1].strip() for line in handle if line.count(",") == 2), "unknown")
    return (
        f"Committed GPU baseline: {', '.join(info.get('gpu_names') or ['unknown GPU'])} (driver {driver}), "
        f"{settings.get('dtype', 'float64')}, torch {versions.get('torch')}, jax {versions.get('jax')}, "
        f"manual on {', '.join(manual_on)}, {len(document['points'])} points in "
        f"{settings.get('elapsed_s', 0):.0f} s.\n"
    )


def gpu_rows_table():
    """The GPU rows of the committed GPU baseline, as a Markdown table."""
    from . import gpu_rows

    document = _load(GPU_BASELINE)
    rows = gpu_rows.records(document["points"], document["settings"]["device"])  # the rows as this code reads them
    lines = [
        "| row (depth 3, one sample) | parameters | manual | jax | torch | manual / jax (target) "
        "| manual peak / block (target) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [gpu_rows.cell(r["engines"][name]) for name in gpu_rows.ENGINES]
        time_text, peak_text = gpu_rows.verdicts(r)
        size = f"{r['n_params']:,}" if r["n_params"] else "not measured"
        lines.append(f"| {r['row']} | {size} | {' | '.join(cells)} | {time_text} | {peak_text or '-'} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Source:
    """Where a generated section comes from: ``make()`` gives its text; ``kind`` is EXACT (committed files and code:
    equal letter for letter) or PRINTED (printed by a run on this machine: compared by ``drift``)."""

    make: Callable[[], str]
    kind: str
    what: str


def sources():
    """``{name: Source}`` of every generated section."""
    from . import ratios
    from .__main__ import build_parser

    return {
        "compare-engines-output": Source(example_output, PRINTED, "what `python examples/compare_engines.py` prints"),
        "minimal-engine": Source(
            lambda: source_file("examples/minimal_engine.py"), EXACT, "examples/minimal_engine.py"
        ),
        "benchmark-flags": Source(lambda: flag_table(build_parser()), EXACT, "`python -m benchmarks --help`"),
        "ratio-rows": Source(ratio_rows_table, EXACT, "the rows of benchmarks.ratios and their targets"),
        "ratio-flags": Source(lambda: flag_table(ratios.build_parser()), EXACT, "`python -m benchmarks.ratios --help`"),
        "baseline-run": Source(baseline_run, EXACT, "benchmarks/baseline/results.json"),
        "baseline-output": Source(baseline_output, EXACT, "benchmarks/baseline/output.txt"),
        "gpu-baseline-run": Source(gpu_baseline_run, EXACT, "benchmarks/baseline/gpu/results.json and machine.txt"),
        "gpu-rows": Source(gpu_rows_table, EXACT, "the GPU rows of benchmarks/baseline/gpu/results.json"),
        "gpu-baseline-output": Source(
            lambda: baseline_output(GPU_BASELINE), EXACT, "benchmarks/baseline/gpu/output.txt"
        ),
        "conformance-headline": Source(conformance_headline, EXACT, "the headline of docs/conformance.md"),
    }


# ---- the tolerant comparison --------------------------------------------------------------------------------
def _shape(line):
    """``(words, numbers)``: the line with every number replaced by a mark and runs of spaces collapsed (column
    widths follow the numbers), and the numbers as ``(text, unit)``. A measured time or size keeps only its kind."""
    numbers = []

    def mark(match):
        unit = match.group("unit")
        numbers.append((match.group("number"), unit))
        return "<time>" if unit in _TIME_UNITS else "<size>" if unit else "<n>"

    return " ".join(NUMBER.sub(mark, line).split()), numbers


def _last_digit(text):
    """One unit in the last printed digit of ``text`` (``8.4e-02`` -> ``1e-03``)."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _number_drift(documented, printed):
    """Why the printed number cannot stand for the documented one, or None when it can."""
    (old, old_unit), (new, new_unit) = documented, printed
    if old_unit or new_unit:  # measured: any value (the kind, time or size, was compared with the words)
        return None
    integral = [re.fullmatch(r"[-+]?\d+", text) is not None for text in (old, new)]
    if all(integral):
        return None if int(old) == int(new) else "an integer (a count, an index or a shape) changed"
    if any(integral):
        return "a number changed its form (an integer against a decimal)"
    a, b = float(old), float(new)
    largest = max(abs(a), abs(b))
    if largest <= ROUNDING:
        return None
    if abs(a - b) <= max(RELATIVE * largest, _last_digit(old), _last_digit(new)):
        return None
    if abs(a) <= ROUNDING:
        return f"it was at rounding level (at most {ROUNDING:g}) and is now far above it"
    if abs(b) <= ROUNDING:
        return f"it is at rounding level now (at most {ROUNDING:g}) and was far above it"
    return f"beyond the printed precision and {RELATIVE:g} relative"


def drift(documented, printed, first_line=1):
    """The first difference that matters between a documented output and what its command prints now, as a sentence
    for people (``first_line``: the document's line of the output's first line); None when they agree within the
    rules of this module's docstring."""
    old_lines, new_lines = documented.rstrip("\n").split("\n"), printed.rstrip("\n").split("\n")
    old_shapes, new_shapes = [_shape(line) for line in old_lines], [_shape(line) for line in new_lines]
    matcher = difflib.SequenceMatcher(a=[w for w, _ in old_shapes], b=[w for w, _ in new_shapes], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                for k, (old, new) in enumerate(zip(old_shapes[i][1], new_shapes[j][1])):
                    why = _number_drift(old, new)
                    if why:
                        return (
                            f"line {first_line + i}, number {k + 1} ({old[0]} documented, {new[0]} printed now): "
                            f"{why}\n  documented:  {old_lines[i].strip()}\n  printed now: {new_lines[j].strip()}"
                        )
        elif tag == "delete":
            return (
                f"line {first_line + i1} is no longer printed ({i2 - i1} line{'s' * (i2 - i1 > 1)} missing)\n"
                f"  documented:  {old_lines[i1].strip()}"
            )
        elif tag == "insert":
            more = f"{j2 - j1} line{'s' * (j2 - j1 > 1)} more"
            return (
                f"a new line is printed after line {first_line + i1 - 1} ({more})\n"
                f"  printed now: {new_lines[j1].strip()}"
            )
        else:
            return (
                f"line {first_line + i1} changed its words, labels, verdicts or layout\n"
                f"  documented:  {old_lines[i1].strip()}\n  printed now: {new_lines[j1].strip()}"
            )
    return None


def exact_drift(documented, current, first_line=1):
    """The first line where a part made from committed files or code differs from its source, or None."""
    if documented == current:
        return None
    old_lines, new_lines = documented.split("\n"), current.split("\n")
    for i, (old, new) in enumerate(zip(old_lines, new_lines)):
        if old != new:
            return f"line {first_line + i} differs from its source\n  documented: {old}\n  source now: {new}"
    return f"the source has {len(new_lines)} lines, the document {len(old_lines)}"


# ---- the documents' parts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """A generated part of a document: a section (``command`` None) or an output block."""

    path: str
    line: int  # of the part's first line in the document, from 1
    name: str  # the section's name, or the block's command
    body: str
    start: int
    end: int
    command: Optional[str] = None

    @property
    def where(self):
        kind = f"the output of `{self.command}`" if self.command else f"the generated section {self.name!r}"
        return f"{os.path.relpath(self.path, ROOT)}:{self.line}, {kind}"


def parts(path):
    """Every generated part of the document at ``path``, in order."""
    with open(path) as handle:
        text = handle.read()
    found = [
        Part(
            path,
            text.count("\n", 0, m.start("body")) + 1,
            m.group("name"),
            m.group("body"),
            m.start("body"),
            m.end("body"),
        )
        for m in SECTION.finditer(text)
    ]
    found += [
        Part(
            path,
            text.count("\n", 0, m.start("body")) + 1,
            m.group("command"),
            m.group("body"),
            m.start("body"),
            m.end("body"),
            m.group("command"),
        )
        for m in OUTPUT_BLOCK.finditer(text)
    ]
    return sorted(found, key=lambda part: part.start)


class Sources:
    """Each source made at most once per run (a section may stand in several documents)."""

    def __init__(self, progress=None):
        self.table, self.made, self.progress = sources(), {}, progress

    def kind(self, part):
        return PRINTED if part.command else self.table[part.name].kind

    def text(self, part):
        key = part.command or part.name
        if key not in self.made:
            if self.progress and (part.command or self.table[part.name].kind == PRINTED):
                self.progress(f"running {part.command or self.table[part.name].what} ({part.where.split(',')[0]})")
            text = command_output(part.command) if part.command else self.table[part.name].make()
            self.made[key] = text if text.endswith("\n") else text + "\n"
        return self.made[key]


def check_part(part, made):
    """A problem report for ``part`` against its source, or None when it holds."""
    if not part.command and part.name not in made.table:
        return (
            f"{part.where} has no source; the sections with one: {', '.join(made.table)} "
            "(benchmarks/readme.py, sources())"
        )
    compare = drift if made.kind(part) == PRINTED else exact_drift
    why = compare(part.body, made.text(part), part.line)
    return None if why is None else f"{part.where} drifted: {why}\n{REGENERATE}"


def unplaced(paths, table):
    """Sources that no document holds."""
    text = "".join(open(path).read() for path in paths)
    return [
        f"no document holds the generated section {name!r} (add <!-- generated: {name} --> ... "
        f"<!-- end generated: {name} --> where it belongs, or drop its source in benchmarks/readme.py)"
        for name in table
        if f"<!-- generated: {name} -->" not in text
    ]


def update(paths=None, rewrite=True, force=False, progress=None):
    """Check (and with ``rewrite``, rewrite) every generated part of ``paths`` (default: every document); the problems
    left, as lines for people. A printed part is rewritten only when it drifted, or with ``force``."""
    made = Sources(progress)
    problems = unplaced(documents(), made.table) if paths is None else []  # every source in some document
    paths = documents() if paths is None else paths
    for path in paths:
        rewrites = []
        for part in parts(path):
            problem = check_part(part, made)
            sourced = part.command or part.name in made.table
            forced = force and sourced and made.kind(part) == PRINTED and made.text(part) != part.body
            if rewrite and sourced and (problem or forced):
                rewrites.append((part, made.text(part)))
            elif problem:
                problems.append(problem)
        if rewrites:
            with open(path) as handle:
                text = handle.read()
            for part, new in sorted(rewrites, key=lambda item: -item[0].start):
                text = text[: part.start] + new + text[part.end :]
            with open(path, "w") as handle:
                handle.write(text)
            print(f"{os.path.relpath(path, ROOT)}: rewrote {', '.join(repr(p.name) for p, _ in rewrites)}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.readme", description=__doc__.split("\n\n")[0].replace("``", "")
    )
    parser.add_argument("--check", action="store_true", help="only report the parts that drifted (exit 1 if any)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="rewrite every printed part, also those within tolerance of what is printed now",
    )
    args = parser.parse_args(argv)
    problems = update(rewrite=not args.check, force=args.force, progress=lambda line: print(line, file=sys.stderr))
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print("every generated part of the docs holds", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
