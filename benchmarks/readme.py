"""The docs' generated sections, so that their figures and tables cannot drift from the code.

``python -m benchmarks.readme`` rewrites every section of ``README.md`` and ``docs/complexity.md`` between
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` from its source; ``--check`` only reports the
sections that differ (exit 1). ``tests/test_docs.py`` checks the same. Sources:

- ``compare-engines-output``: what ``python examples/compare_engines.py`` prints;
- ``benchmark-flags``, ``ratio-flags``: the ``--help`` of ``python -m benchmarks`` and ``python -m benchmarks.ratios``;
- ``ratio-rows``: the rows of ``benchmarks.ratios`` and their targets;
- ``baseline-run``, ``baseline-output``: the committed baseline (``benchmarks/baseline/results.json`` and
  ``output.txt``, less its last line, which names the folder it wrote to);
- ``gpu-baseline-run``, ``gpu-rows``, ``gpu-baseline-output``: the committed GPU baseline
  (``benchmarks/baseline/gpu/``: the GPU, driver and libraries, the GPU rows as a table, what the run printed).

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
GPU_BASELINE = os.path.join(BASELINE, "gpu")
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


def baseline_output(folder=BASELINE):
    with open(os.path.join(folder, "output.txt")) as handle:
        lines = handle.read().rstrip("\n").splitlines()
    return _block("\n".join(line for line in lines if not line.startswith("wrote ")))


def _load(folder):
    with open(os.path.join(folder, "results.json")) as handle:
        return json.load(handle)


def baseline_run():
    """One line: the machine and the duration of the committed baseline."""
    document = _load(BASELINE)
    info, settings = document["machine"], document["settings"]
    cores = info.get("cpu_cores_logical")
    return (f"Committed CPU baseline: {info.get('cpu_model', 'unknown CPU')}, {cores} logical cores, "
            f"{settings.get('dtype', 'float64')}, {settings.get('elapsed_s', 0):.0f} s.\n")


def gpu_baseline_run():
    """One line: the GPU, the libraries and manual's array library of the committed GPU baseline, and its duration."""
    document = _load(GPU_BASELINE)
    info, settings = document["machine"], document["settings"]
    versions = info.get("libraries", {})
    manual_on = sorted({p["device"] for p in document["points"] if p["engine"] == "manual"})
    with open(os.path.join(GPU_BASELINE, "machine.txt")) as handle:
        driver = next((line.split(",")[-1].strip() for line in handle if line.count(",") == 2), "unknown")
    return (f"Committed GPU baseline: {', '.join(info.get('gpu_names') or ['unknown GPU'])} (driver {driver}), "
            f"{settings.get('dtype', 'float64')}, torch {versions.get('torch')}, jax {versions.get('jax')}, "
            f"manual on {', '.join(manual_on)}, {len(document['points'])} points in {settings.get('elapsed_s', 0):.0f} s.\n")


def gpu_rows_table():
    """The GPU rows of the committed GPU baseline, as a Markdown table."""
    from . import gpu_rows

    document = _load(GPU_BASELINE)
    rows = gpu_rows.records(document["points"], document["settings"]["device"])  # the rows as this code reads them
    lines = ["| row (depth 3, one sample) | parameters | manual | jax | torch | manual / jax (target) | manual peak / block (target) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cells = [gpu_rows.cell(r["engines"][name]) for name in gpu_rows.ENGINES]
        time_text, peak_text = gpu_rows.verdicts(r)
        size = f"{r['n_params']:,}" if r["n_params"] else "not measured"
        lines.append(f"| {r['row']} | {size} | {' | '.join(cells)} | {time_text} | {peak_text or '-'} |")
    return "\n".join(lines) + "\n"


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
        "gpu-baseline-run": gpu_baseline_run(),
        "gpu-rows": gpu_rows_table(),
        "gpu-baseline-output": baseline_output(GPU_BASELINE),
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
