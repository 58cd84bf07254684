"""The docs' outputs are what their commands print: each fenced block of README.md and docs/*.md whose first line is
``$ python ...`` is run and compared with what it shows, by structure and tolerance (``benchmarks.readme.drift``:
the same lines, words, verdicts, counts and shapes; rounding-level errors may differ, measured times may change).
``python -m benchmarks.readme`` regenerates them."""

import os

import pytest

from benchmarks import readme

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = [part for path in readme.documents() for part in readme.parts(path) if part.command]


@pytest.fixture(scope="module")
def sources():
    return readme.Sources()


def test_the_docs_show_the_check_outputs_and_the_problem_set_outputs():
    shown = {
        (os.path.relpath(part.path, ROOT), part.command.split()[4 if "-m xval" in part.command else 1])
        for part in BLOCKS
    }
    assert {
        ("README.md", "examples/minimal_engine.py"),
        ("docs/checking.md", "examples/engines/student_backprop.py"),
        ("docs/checking.md", "examples/engines/planted_bug.py"),
    } <= shown
    problem_set = {script for path, script in shown if path == "docs/problem-set.md"}
    assert problem_set == {
        f"examples/{name}.py"
        for name in ("activation_derivatives", "diagnose_stalled_training", "weight_space_symmetry", "linear_collapse")
    }


@pytest.mark.parametrize("part", BLOCKS, ids=[f"{os.path.relpath(p.path, ROOT)}:{p.line}" for p in BLOCKS])
def test_each_output_block_is_what_its_command_prints(part, sources):
    problem = readme.check_part(part, sources)
    assert problem is None, problem


if __name__ == "__main__":  # the former way to regenerate the outputs: now the same as python -m benchmarks.readme
    raise SystemExit(readme.main())
