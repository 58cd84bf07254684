"""The docs' generated sections, so that their figures and tables cannot drift from the code.

``python -m benchmarks.readme`` rewrites every section of ``README.md`` and ``docs/complexity.md`` between
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` from its source; ``--check`` only reports the
sections that differ (exit 1). ``tests/test_docs.py`` checks the same. Sources:

- ``compare-engines-output``: what ``python examples/compare_engines.py`` prints;
- ``benchmark-flags``, ``ratio-flags``: the ``--help`` of ``python -m benchmarks`` and ``python -m benchmarks.ratios``;
- ``ratio-rows``: the rows of ``benchmarks.ratios`` and their targets;
- ``baseline-run``, ``baseline-output``: the committed baseline (``benchmarks/baseline/results.json`` and
  ``output.txt``, less its last line, which names the folder it wrote to).

After a new baseline (``python -m benchmarks --out benchmarks/baseline``), run ``python -m benchmarks.readme``.
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCUMENTS = (README, os.path.join(ROOT, "docs", "complexity.md"))  # the README must hold every section
BASELINE = os.path.join(ROOT, "benchmarks", "baseline")
SECTION = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)


def _block(text):
    return f"```\n{text.rstrip()}\n```\n"


def example_output(script="compare_engines.py"):
    """What the example prints, run as a user would (a fresh interpreter in the repository root)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, os.path.join("examples", script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env, check=True)
    return _block(done.stdout)


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
            lines.append(f"| {row.name} | {ratios.peer_label(peer, row.quantity)} | {target} |")
    return "\n".join(lines) + "\n"


def baseline_output():
    with open(os.path.join(BASELINE, "output.txt")) as handle:
        lines = handle.read().rstrip("\n").splitlines()
    return _block("\n".join(line for line in lines if not line.startswith("wrote ")))


def baseline_run():
    """One line: the machine and the duration of the committed baseline."""
    with open(os.path.join(BASELINE, "results.json")) as handle:
        document = json.load(handle)
    info, settings = document["machine"], document["settings"]
    cores = info.get("cpu_cores_logical")
    return (f"Committed CPU baseline: {info.get('cpu_model', 'unknown CPU')}, {cores} logical cores, "
            f"{settings.get('dtype', 'float64')}, {settings.get('elapsed_s', 0):.0f} s.\n")


def sections():
    """``{name: text}`` of every generated section."""
    from . import ratios
    from .__main__ import build_parser

    return {
        "compare-engines-output": example_output(),
        "benchmark-flags": flag_table(build_parser()),
        "ratio-rows": ratio_rows_table(),
        "ratio-flags": flag_table(ratios.build_parser()),
        "baseline-run": baseline_run(),
        "baseline-output": baseline_output(),
    }


def render(text, generated):
    """``(new text, names of the sections that changed, names in the README with no source)``."""
    changed, unknown = [], []

    def replace(match):
        name = match.group("name")
        if name not in generated:
            unknown.append(name)
            return match.group(0)
        if match.group("body") != generated[name]:
            changed.append(name)
        return match.group(1) + generated[name] + match.group(4)

    return SECTION.sub(replace, text), changed, unknown


def check_document(path, generated, rewrite):
    """Compare (and with ``rewrite``, rewrite) one document; the problems found, as lines for people."""
    with open(path) as handle:
        text = handle.read()
    new, changed, unknown = render(text, generated)
    name = os.path.relpath(path, ROOT)
    problems = [f"{name}: section {s!r} has no source; valid: {', '.join(generated)}" for s in unknown]
    if path == README:
        problems += [f"{name} lacks the section {s!r} (add <!-- generated: {s} --> ... <!-- end generated: {s} -->)"
                     for s in generated if f"<!-- generated: {s} -->" not in text]
    if rewrite and changed:
        with open(path, "w") as handle:
            handle.write(new)
        print(f"{name}: rewrote {', '.join(changed)}")
    elif changed:
        problems += [f"{name}: section {s!r} differs from its source; run: python -m benchmarks.readme" for s in changed]
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("--check", action="store_true", help="only report the sections that differ (exit 1 if any)")
    args = parser.parse_args(argv)
    generated = sections()
    problems = [line for path in DOCUMENTS for line in check_document(path, generated, rewrite=not args.check)]
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
