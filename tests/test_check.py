"""``python -m xval check`` and the engine registry: an engine written outside the suite, as a ``.py`` file, a module
or an entry point, passes; the same engine with a planted error fails naming the quantity; usage errors exit 2."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import ROOT, STUDENT, run_cli
from xval import check, engines
from xval.cases import CASES, LAYER_CASES
from xval.contract import QUANTITIES
from xval.errors import UnknownNameError

PLANTED = os.path.join(ROOT, "examples", "engines", "planted_bug.py")
STUDENT_HAS = (
    "forward",
    "loss",
    "gradient",
    "per_sample_gradients",
    "hvp",
)  # what examples/engines/student_backprop.py defines
SOME_CASES = [
    "mlp-4x8x3-sigmoid-cross_entropy-onehot-N7",
    "mlp-3x6x6x2-softplus-cross_entropy-soft-N6",
    "mlp-4x7x5x6x3-sigmoid+relu+softplus+tanh-mse-N5",
]


def planted_copy(tmp_path, quantity, factor=1 + 1e-6):
    """The student engine as a new file whose ``quantity`` is off by ``factor`` (a relative error of 1e-6)."""
    source = open(STUDENT).read() + textwrap.dedent(f"""

        _exact_{quantity} = {quantity}


        def {quantity}(*args):
            return _exact_{quantity}(*args) * {factor!r}
        """)
    path = tmp_path / "engine.py"
    path.write_text(source)
    return str(path)


def test_an_engine_file_with_its_own_derivatives_passes_the_whole_table():
    report = check.run_check(STUDENT, against=["manual"])
    assert report.ok and report.counts["fail"] == report.counts["error"] == 0
    assert report.counts["pass"] == len(CASES) * len(STUDENT_HAS)  # every case x each quantity the student wrote
    assert {row.quantity for row in report.rows if row.status == "not implemented"} == set(QUANTITIES) - set(
        STUDENT_HAS
    )
    assert max(row.errors["manual"] for row in report.rows if row.status == "pass") < 1e-11


@pytest.mark.parametrize("quantity", ["gradient", "hvp", "forward"])
def test_a_relative_error_of_1e_6_in_one_quantity_fails_naming_it(tmp_path, quantity):
    report = check.run_check(planted_copy(tmp_path, quantity), against=["manual"])
    failed = {row.quantity for row in report.rows if row.status == "fail"}
    assert not report.ok and failed >= {quantity}
    text = check.format_report(report)
    assert text.splitlines()[-1].startswith("FAIL:") and f"failed ({quantity}" in text.splitlines()[-1]
    row = next(row for row in report.rows if row.quantity == quantity and row.case == "mlp-4x8x3-tanh-mse-N5")
    assert row.errors["manual"] == pytest.approx(1e-6 / (1 + 1e-6), rel=1e-3)  # |x (1 + e) - x| / |x (1 + e)|


def test_the_planted_wrong_second_derivative_fails_on_hvp_only_where_sigmoid_is_used():
    report = check.run_check(PLANTED, against=["manual"])
    failed = {(row.case, row.quantity) for row in report.rows if row.status == "fail"}
    assert failed and {quantity for _, quantity in failed} == {"hvp"}
    assert all("sigmoid" in case for case, _ in failed)


def test_the_command_prints_a_line_per_case_or_the_table_and_exits_0_or_1():
    good = run_cli("check", STUDENT, "--against", "manual,torch", "--cases", ",".join(SOME_CASES))
    assert good.returncode == 0, good.stderr
    lines = good.stdout.strip().splitlines()
    assert lines[0] == "check of engine student_backprop.py against manual, torch (float64)"
    assert [line for line in lines if line.startswith(("1/3 ", "2/3 ", "3/3 "))] == [
        f"{i}/3 {case}: 5 passed" for i, case in enumerate(SOME_CASES, 1)
    ]
    missing = ", ".join(name for name in QUANTITIES if name not in STUDENT_HAS)
    assert lines[-1] == f"OK: 15 checks, 15 passed, 0 failed; not implemented (skipped): {missing}"
    table = run_cli("check", STUDENT, "--against", "manual,torch", "--cases", SOME_CASES[0], "--verbose")
    assert table.returncode == 0 and "vs manual" in table.stdout and "vs torch" in table.stdout
    assert re.search(r"\n  hvp +\d\.\de-\d\d +\d\.\de-\d\d  pass\n", table.stdout), table.stdout
    bad = run_cli(
        "check", PLANTED, "--against", "manual", "--cases", ",".join(SOME_CASES), "--quantities", "gradient,hvp"
    )
    assert bad.returncode == 1
    assert bad.stdout.strip().splitlines()[-1] == "FAIL: 6 checks, 4 passed, 2 failed (hvp)"  # the two sigmoid cases
    assert "hvp on 2 of 3 cases: relative error up to" in bad.stdout
    assert re.search(r"worst: layer \d, [Wb]\[[\d, ]+\] = ", bad.stdout), bad.stdout  # named, not a flat index
    verbose = run_cli(
        "check", PLANTED, "--against", "manual", "--cases", SOME_CASES[0], "--quantities", "hvp", "--verbose"
    )
    assert "hvp vs manual: relative error" in verbose.stdout
    assert re.search(r"layer \d, [Wb]\[[\d, ]+\] \(index \(\d+,\)\): ", verbose.stdout), verbose.stdout


def test_json_output(tmp_path):
    import json

    target = tmp_path / "report.json"
    result = run_cli("check", "manual", "--against", "torch", "--cases", SOME_CASES[0], "--json", str(target))
    assert result.returncode == 0, result.stderr
    payload = json.loads(target.read_text())
    count = len(QUANTITIES)  # one row per quantity of the contract on one case
    assert payload["ok"] and payload["counts"]["pass"] == count and payload["against"] == ["torch"]
    assert payload["outcome"] == "pass" and payload["exit_code"] == 0
    assert payload["summary"].startswith(f"OK: {count} checks")
    assert [row["quantity"] for row in payload["rows"]] == list(QUANTITIES)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["check", "tensorflow"], "error: unknown engine 'tensorflow'"),
        (["check", "no/such/engine.py"], "error: engine file 'no/such/engine.py' does not exist"),
        (
            ["check", "manual", "--quantities", "jacobian"],
            "error: --quantities names unknown quantity 'jacobian'; valid",
        ),
        (["check", "manual", "--cases", "mlp-1x1"], "error: unknown case 'mlp-1x1'; valid cases are:"),
        (["check", "manual", "--against", "tensorflow"], "error: unknown engine 'tensorflow'"),
        (["check", "manual", "--cases", ""], "error: no case selected (--cases is empty)"),
        (["check", "manual", "--quantities", ""], "error: no quantity selected (--quantities is empty)"),
        (["check", "manual", "--timeout", "0"], "--timeout: '0' is not a number of seconds > 0"),
        (
            ["check", "manual", "--json", "no/such/folder/report.json"],
            "error: --json no/such/folder/report.json: the folder",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_message(arguments, message):
    result = run_cli(*arguments)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_an_engine_that_raises_on_import_or_exposes_nothing_is_a_usage_error(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half-written engine')\n")
    result = run_cli("check", str(broken))
    assert result.returncode == 2 and "raised while being imported: RuntimeError: half-written engine" in result.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("def helper(x):\n    return x\n")
    result = run_cli("check", str(empty))
    assert result.returncode == 2 and "exposes none of the contract's functions" in result.stderr


def test_a_function_that_raises_is_an_error_row_and_a_missing_one_is_skipped(tmp_path):
    engine = tmp_path / "partial.py"
    engine.write_text("def gradient(net, X, Y):\n    raise ValueError('not yet')\n")
    report = check.run_check(str(engine), against=["manual"], cases=SOME_CASES[:1])
    statuses = {row.quantity: row.status for row in report.rows}
    assert statuses["gradient"] == "error" and statuses["hvp"] == "not implemented"
    assert "gradient raised ValueError: not yet" in check.format_report(report)


def test_engines_resolve_by_module_name_and_entry_point(tmp_path):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "engine.py").write_text(open(STUDENT).read())
    info = tmp_path / "mypkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[xval.engines]\nstudent = mypkg.engine\n")
    code = (
        "from xval import engines; import sys; "
        "a = engines.load('mypkg.engine'); b = engines.load('student'); "
        "print(a is b, sorted(engines.available_names()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True") and "'student'" in result.stdout


def test_a_py_path_loads_once_and_unknown_names_list_the_forms():
    assert engines.load(STUDENT) is engines.load(os.path.relpath(STUDENT))
    with pytest.raises(
        UnknownNameError, match=r"built-in or registered name \(.*manual.*\), an importable module name"
    ):
        engines.load("no_such_engine_module")


def test_pytest_runs_the_comparisons_for_an_engine_named_by_its_file():
    """``XVAL_BACKEND=manual,path/to/engine.py python -m pytest`` compares that engine with manual; its missing
    quantities skip, and the planted bug fails."""
    env = {**os.environ, "XVAL_BACKEND": f"manual,{os.path.relpath(STUDENT, ROOT)}"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",
        os.path.join("tests", "test_comparisons.py"),
        "-k",
        "engine_matches_manual",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:]
    # each MLP case x the student's quantities passes; everything else skips (not implemented, or a network of
    # other layer kinds, which the student's engine declines through net.weights)
    compared = len(CASES) * len(STUDENT_HAS)
    skipped = (len(CASES) + len(LAYER_CASES)) * len(QUANTITIES) - compared
    assert f"{compared} passed, {skipped} skipped" in result.stdout, result.stdout[-500:]
    env["XVAL_BACKEND"] = f"manual,{os.path.relpath(PLANTED, ROOT)}"
    result = subprocess.run(command + ["-x"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 1 and "hvp manual vs" in result.stdout
