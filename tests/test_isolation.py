"""Engines cannot touch what they are judged by, nor end the check (``xval.isolation``): read-only copies of their
inputs, results checked for kind and shape, and an outside engine in its own process with a time limit per call, so
that ``sys.exit``, ``os._exit``, a crash, a hang or a ``KeyboardInterrupt`` is that engine's failure, with the
quantity and the case, and ``python -m xval check`` exits with a truthful status."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import manual
from tests.helpers import ROOT, engine_file, run_cli
from xval import cases, check, isolation
from xval.contract import QUANTITIES
from xval.errors import EngineInputWriteError, EngineResultError

ONE_CASE = ["mlp-4x8x3-tanh-mse-N5"]
TWO_CASES = ["mlp-4x8x3-tanh-mse-N5", "mlp-4x3-identity-cross_entropy-soft-N5"]


def rows_of(report, quantity):
    return [row for row in report.rows if row.quantity == quantity]


# ---- results: real floating arrays of the contract's shape --------------------------------------------------------
@pytest.mark.parametrize(
    "value, kind",
    [
        (np.zeros(67, dtype=complex), "a complex array"),
        (np.zeros(67, dtype=np.int64), "an integer array"),
        (np.zeros(67, dtype=bool), "a boolean array"),
        (np.array([object()] * 67), "a Python object array"),
        (np.array(["0"] * 67), "a text array"),
    ],
)
def test_a_result_that_is_not_real_floating_is_refused_naming_the_call(value, kind):
    with pytest.raises(EngineResultError, match=f"gradient returned {kind} "):
        isolation.checked_result("gradient", value, (67,))


def test_a_result_of_another_shape_is_refused_and_floats_are_accepted():
    with pytest.raises(
        EngineResultError,
        match=r"hessian_block\(0, 1\) returned an array of shape \(3,\), but the "
        r"contract's shape is \(40, 27\)",
    ):
        isolation.checked_result("hessian_block(0, 1)", np.zeros(3), (40, 27))
    assert isolation.checked_result("loss", 0.25, ()).dtype == np.float64  # a Python float is a 0-d float array
    assert isolation.checked_result("gradient", np.ones(3, np.float32), (3,)).dtype == np.float64


def test_a_complex_result_fails_the_check_naming_the_quantity(tmp_path):
    """On main this passed with a ComplexWarning (the result was cast to float64)."""
    path = engine_file(
        tmp_path,
        "complex_engine.py",
        """
        _real = gradient

        def gradient(net, X, Y):
            return _real(net, X, Y) + 0j
        """,
        student=True,
    )
    report = check.run_check(path, against=["manual"], quantities=["gradient", "loss"], cases=ONE_CASE)
    row = rows_of(report, "gradient")[0]
    assert row.status == "fail" and "gradient returned a complex array" in row.detail
    assert rows_of(report, "loss")[0].status == "pass" and report.exit_code == check.EXIT_FAIL


# ---- inputs: read-only copies, the references computed from the originals ---------------------------------------
def test_an_engine_cannot_write_into_its_inputs():
    problem = cases.problem(cases.CASES[2])
    call = QUANTITIES["gradient"].calls(problem)[0]
    Y_before = problem.Y.copy()

    def overwrite(net, X, Y):
        Y[...] = manual.forward(net, X)  # the engine: make the targets the outputs, return zeros
        return np.zeros(net.n_params)

    with pytest.raises(EngineInputWriteError, match=r"gradient tried to write into its inputs .* X, Y are read-only"):
        isolation.guarded_call(overwrite, call.label, call.net, call.arguments, call.shape, ("X", "Y"))

    def reflag(net, X, Y):
        Y.flags.writeable = True
        return np.zeros(net.n_params)

    with pytest.raises(EngineInputWriteError):
        isolation.guarded_call(reflag, call.label, call.net, call.arguments, call.shape, ("X", "Y"))
    assert np.array_equal(problem.Y, Y_before)


def test_a_write_behind_numpys_back_is_found_by_comparing_before_and_after():
    import ctypes

    problem = cases.problem(cases.CASES[2])
    call = QUANTITIES["hvp"].calls(problem)[0]

    def sneaky(net, X, Y, v):
        zeros = np.zeros_like(v)
        ctypes.memmove(v.ctypes.data, zeros.ctypes.data, v.nbytes)
        return manual.hvp(net, X, Y, v)

    with pytest.raises(EngineInputWriteError, match="hvp changed its input v"):
        isolation.guarded_call(sneaky, call.label, call.net, call.arguments, call.shape, ("X", "Y", "v"))
    assert np.any(problem.v)  # the original is intact


def test_an_engine_that_overwrites_its_targets_fails_the_check(tmp_path):
    """On main: the engine set Y to the network's outputs and returned zeros, and the references, computed after it
    on the changed Y, agreed: a pass."""
    path = engine_file(
        tmp_path,
        "overwrite.py",
        """
        import numpy as np

        def forward(net, X):
            z = X
            for W, b in zip(net.weights, net.biases):
                z = np.tanh(z @ W.T + b) if W is not net.weights[-1] else z @ W.T + b
            return z

        def gradient(net, X, Y):
            Y[...] = forward(net, X)
            return np.zeros(net.n_params)
        """,
    )
    report = check.run_check(path, against=["manual"], quantities=["gradient"], cases=ONE_CASE)
    row = report.rows[0]
    assert row.status == "fail" and "gradient tried to write into its inputs" in row.detail
    assert report.exit_code == check.EXIT_FAIL


# ---- an outside engine in its own process ---------------------------------------------------------------------
HOSTILE = {
    "sys_exit": ("import sys\n", "sys.exit(0)", "SystemExit: the engine called sys.exit(0)"),
    "os_exit": ("import os\n", "os._exit(0)", "its process ended with exit code 0"),
    "segfault": ("import ctypes\n", "ctypes.string_at(0)", "killed by SIGSEGV (a crash in native code)"),
    "keyboard_interrupt": ("", "raise KeyboardInterrupt", "KeyboardInterrupt"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_an_engine_that_exits_crashes_or_interrupts_is_that_calls_failure(tmp_path, kind):
    imports, statement, message = HOSTILE[kind]
    path = engine_file(
        tmp_path,
        f"{kind}.py",
        imports
        + f"""
_student_gradient = gradient


def gradient(net, X, Y):
    {statement}
""",
        student=True,
    )
    report = check.run_check(path, against=["manual"], quantities=["gradient", "loss"], cases=TWO_CASES)
    for row in rows_of(report, "gradient"):  # each case: the quantity, the case and what happened
        assert row.status == "error" and row.detail.startswith("gradient") and message in row.detail, row.detail
    assert [row.status for row in rows_of(report, "loss")] == ["pass", "pass"]  # the next calls run in a fresh process
    assert report.exit_code == check.EXIT_FAIL


def test_the_command_exits_1_when_an_engine_exits_0(tmp_path):
    """On main, sys.exit(0) or os._exit(0) inside a quantity ended check with exit 0 and no output."""
    for statement in ("import sys; sys.exit(0)", "import os; os._exit(0)"):
        path = engine_file(
            tmp_path,
            "quitter.py",
            f"""
            def loss(net, X, Y):
                {statement}
            """,
        )
        result = run_cli("check", path, "--against", "manual", "--cases", ONE_CASE[0], "--quantities", "loss")
        assert result.returncode == 1, (statement, result.stdout, result.stderr)
        assert result.stdout.strip().splitlines()[-1] == "FAIL: 1 checks, 0 passed, 1 failed (loss)"


def test_a_hang_is_stopped_at_the_time_limit_once_per_quantity(tmp_path):
    path = engine_file(
        tmp_path,
        "sleepy.py",
        """
        import time

        def gradient(net, X, Y):
            time.sleep(600)
        """,
    )
    started = time.monotonic()
    report = check.run_check(path, against=["manual"], quantities=["gradient"], cases=TWO_CASES, timeout=2)
    assert time.monotonic() - started < 60
    first, second = report.rows
    assert first.status == "error" and "gradient raised" not in first.detail
    assert "did not finish within 2 s (--timeout)" in first.detail and first.case == TWO_CASES[0]
    assert second.status == "error" and second.detail == f"not run: gradient ran past the time limit on {TWO_CASES[0]}"
    assert report.exit_code == check.EXIT_FAIL


@pytest.mark.parametrize(
    "statement, message",
    [
        ("import sys; sys.exit(0)", "raised while being imported: SystemExit: the engine called sys.exit(0)"),
        ("import os; os._exit(3)", "could not be imported: its process ended with exit code 3"),
        ("raise KeyboardInterrupt", "raised while being imported: KeyboardInterrupt"),
    ],
)
def test_an_engine_that_ends_or_interrupts_its_import_is_a_usage_error(tmp_path, statement, message):
    path = engine_file(tmp_path, "bad_import.py", f"{statement}\n\ndef loss(net, X, Y):\n    return 0.0\n")
    result = run_cli("check", path, "--against", "manual", "--cases", ONE_CASE[0])
    assert result.returncode == check.EXIT_USAGE and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_one_child_process_serves_every_call(tmp_path):
    record = tmp_path / "pids.txt"
    path = engine_file(
        tmp_path,
        "pids.py",
        f"""
        import os

        _student_loss = loss

        def loss(net, X, Y):
            with open({str(record)!r}, "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            return _student_loss(net, X, Y)
        """,
        student=True,
    )
    report = check.run_check(path, against=["manual"], cases=TWO_CASES)
    pids = set(record.read_text().split())
    assert report.exit_code == check.EXIT_PASS and len(pids) == 1 and str(os.getpid()) not in pids


def test_an_engine_file_named_like_a_standard_module_loads_as_the_engine(tmp_path):
    """On main, ``python -m xval check json.py`` in the engine's folder broke torch's ``import json``."""
    engine_file(tmp_path, "json.py", "", student=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    result = run_cli("check", "json.py", "--against", "manual,torch", "--cases", ONE_CASE[0], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == "check of engine json.py against manual, torch (float64)"


def test_ctrl_c_stops_the_check_cleanly_with_exit_130(tmp_path):
    path = engine_file(
        tmp_path,
        "slow.py",
        """
        import time

        def loss(net, X, Y):
            time.sleep(60)
            return 0.0
        """,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "xval", "check", path, "--against", "manual"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout.readline().startswith("check of engine slow.py")  # loaded, now in the first call
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == check.EXIT_INTERRUPTED, err
    assert "interrupted: the check stopped before it finished" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the engine's process went with it
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the engine's process outlived the interrupted check")


def test_help_states_the_time_limit_and_the_exit_codes():
    text = " ".join(run_cli("check", "--help").stdout.split())
    assert f"(default {isolation.DEFAULT_TIMEOUT:g})" in text and "--timeout SECONDS" in text
    assert "Exit status: 0" in text and "3 nothing disagrees but something was not compared" in text
    assert "130 interrupted" in text and "default: XVAL_DTYPE" in text


def test_the_comparison_tests_fail_a_nan_engine_and_one_that_writes_into_its_inputs(tmp_path):
    """On main ``XVAL_BACKEND=manual,nan_engine.py pytest tests/test_comparisons.py`` passed a NaN loss, and an engine
    that wrote into Y passed too."""
    nan_engine = engine_file(
        tmp_path,
        "nan_engine.py",
        """
        def loss(net, X, Y):
            return float("nan")
        """,
    )
    writer = engine_file(
        tmp_path,
        "writer.py",
        """
        _student_loss = loss


        def loss(net, X, Y):
            value = _student_loss(net, X, Y)
            Y[...] = 0.0
            return value
        """,
        student=True,
    )
    env = {**os.environ, "XVAL_BACKEND": f"manual,{nan_engine},{writer}"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",
        "-rf",
        os.path.join("tests", "test_comparisons.py"),
        "-k",
        f"engine_matches_manual and {ONE_CASE[0]} and loss",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "2 failed" in result.stdout and "relative error inf > tolerance" in result.stdout
    assert "loss tried to write into its inputs" in result.stdout


def test_an_engine_named_by_module_runs_isolated_with_the_callers_import_path(tmp_path):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    engine_file(
        package,
        "engine.py",
        """
        import os

        _student_loss = loss


        def loss(net, X, Y):
            assert os.getpid() != int(os.environ["XVAL_TEST_PARENT_PID"]), "ran in the check's own process"
            return _student_loss(net, X, Y)
        """,
        student=True,
    )
    code = (
        "import os, sys; os.environ['XVAL_TEST_PARENT_PID'] = str(os.getpid()); sys.path.insert(0, sys.argv[1]); "
        "from xval import check; report = check.run_check('mypkg.engine', against=['manual'], cases=sys.argv[2:]); "
        "print(report.outcome, report.counts['pass'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), ONE_CASE[0]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.split() == ["pass", "5"], result.stderr[-2000:]
