"""What ``python -m xval check`` reports: a verdict only where something was compared (NaN never passes, a row no
reference computed is "not checked", exit 3 when nothing or not everything was compared), every ``XVAL_*`` setting
checked before work, a line per case as it finishes, failing entries named in the network's terms, a diagnosis that
says what the failures share, a short default report, and the dtype asked for by ``XVAL_DTYPE``."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import ROOT, STUDENT, engine_file, run_cli
from xval import cases, check, compare, config
from xval.contract import QUANTITIES
from xval.network import Network

ONE_CASE = "mlp-4x8x3-tanh-mse-N5"
TANH_SECOND_DERIVATIVE_BUG = """
    ACTIVATIONS["tanh"] = (np.tanh, ACTIVATIONS["tanh"][1], lambda x: -2 * np.tanh(x) * (1 - np.tanh(x)))
    """
TRANSPOSED_WEIGHT_GRADIENT_BUG = """
    _exact_per_sample_gradients = per_sample_gradients


    def per_sample_gradients(net, X, Y):
        rows = _exact_per_sample_gradients(net, X, Y).copy()
        n_out, n_in = net.weights[0].shape
        W0 = rows[:, :n_out * n_in].reshape(len(X), n_out, n_in)
        rows[:, :n_out * n_in] = W0.transpose(0, 2, 1).reshape(len(X), -1)  # the slip: (n_in, n_out) laid out
        return rows
    """


# ---- names in the network's terms ---------------------------------------------------------------------------------
def test_parameter_names_follow_the_contracts_layout():
    net = Network.random([4, 8, 3], "tanh", "mse")  # W_0 (8, 4) at 0..31, b_0 at 32..39, W_1 (3, 8) at 40..63, b_1
    assert compare.parameter_tensors(net) == [(0, "W", (8, 4)), (0, "b", (8,)), (1, "W", (3, 8)), (1, "b", (3,))]
    assert compare.parameter_name(net, 5) == "layer 0, W[1, 1]"
    assert compare.parameter_name(net, 35) == "layer 0, b[3]"
    assert compare.parameter_name(net, 40 + 8 * 2 + 7) == "layer 1, W[2, 7]"
    assert compare.parameter_name(net, 66) == "layer 1, b[2]"
    assert compare.parameter_name(net, 3, layer=1) == "layer 1, W[0, 3]"  # an index within layer 1's parameters
    assert [compare.parameter_name(net, i) for i in range(net.n_params)] == [
        f"layer {layer}, {name}[{', '.join(map(str, np.unravel_index(i, shape)))}]"
        for layer, name, shape in compare.parameter_tensors(net)
        for i in range(int(np.prod(shape)))
    ]
    with pytest.raises(IndexError):
        compare.parameter_name(net, net.n_params)


def test_entries_of_each_quantity_are_named_by_sample_output_row_and_column():
    problem = cases.problem(cases.CASES[2])  # mlp-4x8x3-tanh-mse-N5
    name = {quantity: QUANTITIES[quantity].calls(problem, every_block=True) for quantity in QUANTITIES}
    assert compare.entry_name(name["forward"][0], (2, 1)) == "sample 2, output 1"
    assert compare.entry_name(name["loss"][0], ()) == "the value"
    assert compare.entry_name(name["gradient"][0], (5,)) == "layer 0, W[1, 1]"
    assert compare.entry_name(name["per_sample_gradients"][0], (3, 5)) == "sample 3, layer 0, W[1, 1]"
    assert compare.entry_name(name["hessian"][0], (35, 41)) == "row layer 0, b[3], column layer 1, W[0, 1]"
    block = next(call for call in name["hessian_block"] if call.arguments[-2:] == (1, 0))
    assert compare.entry_name(block, (26, 5)) == "row layer 1, b[2], column layer 0, W[1, 1]"


# ---- a verdict needs a comparison -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "quantity, poison",
    [
        ("loss", "value = np.nan"),
        ("gradient", "value = value.copy(); value[3] = np.nan"),
        ("forward", "value = np.full_like(value, np.nan)"),
        ("hvp", "value = value.copy(); value[0] = np.inf"),
    ],
)
def test_a_nan_or_infinite_value_fails(tmp_path, quantity, poison):
    """On main an engine whose loss was NaN got "loss nan pass", exit 0."""
    path = engine_file(
        tmp_path,
        "nan_engine.py",
        f"""
        _exact = {quantity}


        def {quantity}(*args):
            value = _exact(*args)
            {poison}
            return value
        """,
        student=True,
    )
    report = check.run_check(path, against=["manual"], quantities=[quantity], cases=[ONE_CASE])
    row = report.rows[0]
    assert row.status == "fail" and row.errors["manual"] == np.inf and report.exit_code == check.EXIT_FAIL
    assert "is wrong" in row.arbiter or "no verdict" in row.arbiter


def test_a_row_no_reference_computed_is_not_checked_and_exits_3(tmp_path):
    """On main a Hessian of ones passed when every reference refused the call (shown as n/a, counted as a pass)."""
    ones = engine_file(
        tmp_path,
        "ones.py",
        """
        import numpy as np

        def hessian(net, X, Y):
            return np.ones((net.n_params, net.n_params))
        """,
    )
    refuses = engine_file(
        tmp_path,
        "refuses.py",
        """
        def hessian(net, X, Y):
            raise MemoryError("too large for this reference")
        """,
    )
    report = check.run_check(ones, against=[refuses], cases=[ONE_CASE])
    row = next(row for row in report.rows if row.quantity == "hessian")
    assert row.status == "not checked" and row.errors == {"refuses.py": None}
    assert row.reasons == {"refuses.py": "MemoryError: too large for this reference"}
    assert report.outcome == "not checked" and report.exit_code == check.EXIT_NOT_CHECKED == 3
    text = check.format_report(report)
    assert "NOT CHECKED hessian" in text and "refuses.py: MemoryError: too large for this reference" in text
    assert text.splitlines()[-1].startswith("NOT CHECKED: 0 checks, 0 passed, 0 failed; 1 not checked (hessian")


def test_references_refused_by_the_memory_cap_leave_the_row_not_checked(tmp_path):
    ones = engine_file(
        tmp_path,
        "ones.py",
        """
        import numpy as np

        def hessian(net, X, Y):
            return np.ones((net.n_params, net.n_params))
        """,
    )
    result = run_cli("check", ones, "--against", "manual,torch", "--cases", ONE_CASE, env={"XVAL_MAX_BYTES": "1e4"})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "MemoryGuardError" in result.stdout and result.stdout.splitlines()[-1].startswith("NOT CHECKED:")


def test_an_engine_with_none_of_the_requested_quantities_exits_3(tmp_path):
    path = engine_file(
        tmp_path,
        "hessian_only.py",
        """
        import numpy as np

        def hessian(net, X, Y):
            return np.zeros((net.n_params, net.n_params))
        """,
    )
    result = run_cli("check", path, "--against", "manual", "--quantities", "gradient,hvp", "--cases", ONE_CASE)
    assert result.returncode == 3
    assert result.stdout.splitlines()[-1] == (
        "NOT CHECKED: nothing was compared: hessian_only.py implements none of "
        "the requested quantities (gradient, hvp); it implements: hessian"
    )


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"XVAL_DEVICE": "gpu"}, "XVAL_DEVICE='gpu' is not valid; use one of: auto, cpu, cuda"),
        ({"XVAL_THREADS": "many"}, "XVAL_THREADS='many' is not valid"),
        ({"XVAL_ARRAY": "tensorflow"}, "XVAL_ARRAY='tensorflow' is not valid"),
        ({"XVAL_DTYPE": "float16"}, "XVAL_DTYPE='float16' is not valid"),
    ],
)
def test_every_setting_is_checked_before_any_work(setting, message):
    """On main XVAL_DEVICE=gpu was not read by check: every reference became unavailable and a buggy engine passed."""
    result = run_cli("check", STUDENT, "--against", "manual", "--cases", ONE_CASE, env=setting)
    assert result.returncode == 2 and message in result.stderr and result.stdout == "", result.stderr


@pytest.mark.skipif(config.gpu_seen(), reason="a GPU is seen here: XVAL_DEVICE=cuda is valid")
def test_cuda_without_a_gpu_is_refused_by_check_and_by_pytest():
    result = run_cli("check", STUDENT, "--against", "manual", "--cases", ONE_CASE, env={"XVAL_DEVICE": "cuda"})
    assert result.returncode == 2 and "XVAL_DEVICE=cuda but neither torch nor jax sees a GPU" in result.stderr
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            os.path.join("tests", "test_activations.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XVAL_DEVICE": "cuda"},
    )
    assert tests.returncode == 4 and "neither torch nor jax sees a GPU" in tests.stderr, tests.stderr[-2000:]


# ---- the planted bugs: short reports that name the entry and say what the failures share -------------------------
def test_a_tanh_second_derivative_bug_gets_a_short_report_pointing_at_tanh(tmp_path):
    path = engine_file(tmp_path, "tanh_bug.py", TANH_SECOND_DERIVATIVE_BUG, student=True)
    result = run_cli("check", path, "--against", "manual")
    lines = result.stdout.rstrip("\n").splitlines()
    assert result.returncode == 1 and len(lines) <= 40, result.stdout
    failing = {line.split()[1].rstrip(":") for line in lines if "FAIL" in line and "/15 " in line}
    with_tanh = {cases.case_id(case) for case in cases.CASES if "tanh" in str(case["activations"])}
    assert failing and failing <= with_tanh and len(failing) >= len(with_tanh) - 1  # tanh cases (nearly all)
    assert lines[-1].startswith("FAIL: 75 checks") and lines[-1].count("(hvp)") == 1
    text = " ".join(result.stdout.split())
    assert "every failing case has a tanh layer and no passing case has one" in text
    assert "Only tanh cases, only second-order quantities (hvp): look at tanh''" in text
    assert "forward, loss, gradient and per_sample_gradients pass on every case" in text
    assert "worst: layer " in text and "arbiter: tanh_bug.py is wrong" in text


def test_a_transposed_weight_gradient_gets_a_short_report_naming_layer_0_W(tmp_path):
    path = engine_file(tmp_path, "transposed.py", TRANSPOSED_WEIGHT_GRADIENT_BUG, student=True)
    result = run_cli("check", path, "--against", "manual")
    lines = result.stdout.rstrip("\n").splitlines()
    assert result.returncode == 1 and len(lines) <= 40, result.stdout
    assert lines[-1].startswith("FAIL: 75 checks") and "(gradient, per_sample_gradients)" in lines[-1]
    text = " ".join(result.stdout.split())
    assert "worst: layer 0, W[" in text and "worst: sample " in text and "entries off: layer 0 W" in text
    assert "a transposed weight gradient (layer 0 W at transposed positions" in text
    assert "forward, loss and hvp pass on every case" in text
    assert "the cases that pass have a layer 0 W with one row or column" in text  # 3x1 and 5x1x4


def test_verbose_and_json_keep_every_entry(tmp_path):
    path = engine_file(tmp_path, "transposed.py", TRANSPOSED_WEIGHT_GRADIENT_BUG, student=True)
    target = tmp_path / "report.json"
    result = run_cli(
        "check",
        path,
        "--against",
        "manual",
        "--cases",
        ONE_CASE,
        "--quantities",
        "gradient,loss",
        "--verbose",
        "--json",
        str(target),
    )
    assert result.returncode == 1
    assert "gradient vs manual: relative error" in result.stdout and "(index (" in result.stdout
    payload = json.loads(target.read_text())
    assert payload["outcome"] == "fail" and payload["exit_code"] == 1 and payload["diagnosis"].startswith("diagnosis:")
    row = next(row for row in payload["rows"] if row["quantity"] == "gradient")
    assert row["tensors"] == ["layer 0 W"] and row["relations"] == ["transposed layer 0 W"]
    assert row["entries"][0]["entry"].startswith("layer 0, W[") and len(row["entries"]) == 3
    assert payload["cases"][ONE_CASE]["activations"] == ["tanh", "identity"]


# ---- streaming, and the dtype --------------------------------------------------------------------------------------
def test_each_case_is_printed_as_it_finishes(tmp_path):
    path = engine_file(
        tmp_path,
        "slow_loss.py",
        """
        import time

        _exact_loss = loss


        def loss(net, X, Y):
            time.sleep(2.0)
            return _exact_loss(net, X, Y)
        """,
        student=True,
    )
    three = [cases.case_id(case) for case in cases.CASES[:3]]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xval",
            "check",
            path,
            "--against",
            "manual",
            "--quantities",
            "loss",
            "--cases",
            ",".join(three),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    arrivals = []
    for line in process.stdout:
        arrivals.append((time.monotonic(), line.rstrip("\n")))
    process.wait(timeout=120)
    finished = time.monotonic()
    verdicts = [(at, line) for at, line in arrivals if line.startswith(("1/3 ", "2/3 ", "3/3 "))]
    assert [line for _, line in verdicts] == [f"{i}/3 {case}: 1 passed" for i, case in enumerate(three, 1)]
    assert finished - verdicts[0][0] > 3.0  # the first verdict came out two slow cases before the end
    assert process.stderr.read() == ""  # no progress bar in a pipe


def test_xval_dtype_is_honoured_and_an_explicit_dtype_wins():
    """On main XVAL_DTYPE=float32 python -m xval check ran in float64 without a word."""
    arguments = ("check", "manual", "--against", "torch", "--cases", ONE_CASE, "--quantities", "gradient")
    single = run_cli(*arguments, env={"XVAL_DTYPE": "float32"})
    assert single.returncode == 0, single.stderr
    assert single.stdout.splitlines()[0] == "check of engine manual against torch (float32)"
    assert "tolerance: 2e-04" in single.stdout
    double = run_cli(*arguments, "--dtype", "float64", env={"XVAL_DTYPE": "float32"})
    assert double.stdout.splitlines()[0] == "check of engine manual against torch (float64)"
    report = check.run_check("manual", against=["torch"], cases=[ONE_CASE], quantities=["gradient"], dtype="float32")
    assert report.dtype == "float32" and report.rows[0].tolerance == compare.TOLERANCES["float32"]


def test_a_disagreement_with_any_reference_is_judged_not_only_the_first(tmp_path):
    """The engine agrees with manual, not with a second reference that is off by 1e-6: the arbiter is asked, finds
    that reference wrong, and the row passes on its verdict (saying so); against the wrong reference alone it fails."""
    wrong = engine_file(
        tmp_path,
        "wrong_reference.py",
        """
        _exact_gradient = gradient


        def gradient(*args):
            return _exact_gradient(*args) * (1 + 1e-6)
        """,
        student=True,
    )
    report = check.run_check(STUDENT, against=["manual", wrong], quantities=["gradient"], cases=[ONE_CASE])
    row = report.rows[0]
    assert row.status == "pass" and row.errors["wrong_reference.py"] > 1e-7 and row.errors["manual"] < 1e-12
    assert "arbiter: wrong_reference.py is wrong" in row.detail and report.exit_code == check.EXIT_PASS
    assert "passed on the arbiter's verdict" in check.format_report(report)


def test_a_reference_that_gave_no_value_is_named_even_when_the_others_decided(tmp_path):
    refuses = engine_file(
        tmp_path,
        "refuses.py",
        """
        def gradient(net, X, Y):
            raise MemoryError("too large for this reference")
        """,
    )
    report = check.run_check(STUDENT, against=["manual", refuses], quantities=["gradient"], cases=[ONE_CASE])
    assert report.rows[0].status == "pass" and report.rows[0].errors["refuses.py"] is None
    assert (
        "refuses.py gave no value on 1 of 1 compared rows (first: gradient on mlp-4x8x3-tanh-mse-N5: MemoryError: "
        "too large for this reference)"
    ) in check.format_report(report)
