"""``python -m xval conformance`` and the field's libraries as engines: short names resolve to the adapters, a missing
library is skipped with its install line, ``check`` judges the pending curvature quantities, stochastic estimators
are judged as statistics, a planted bug in an adapter is reported naming the quantity, and the committed matrix
(docs/conformance.md, docs/conformance.json) is in step with the code (regenerated on a sample of cases)."""

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from peers._common import INSTALL
from tests.helpers import ROOT, run_cli
from xval import cases, check, conformance, conformance_report, engines, estimators
from xval.errors import EngineUnavailableError

MATRIX_JSON = os.path.join(ROOT, "docs", "conformance.json")
MATRIX_MARKDOWN = os.path.join(ROOT, "docs", "conformance.md")
FINDINGS = os.path.join(ROOT, "docs", "findings.md")
ONE_CASE = "mlp-4x8x3-sigmoid-cross_entropy-onehot-N7"
# The sample CI regenerates: one classification case in float64 and one regression case in float32.
SAMPLE = [("float64", "mlp-4x8x3-sigmoid-cross_entropy-onehot-N7"), ("float32", "mlp-3x6x6x2-relu-mse-N8")]


def installed(name):
    try:
        engines.load(name)
    except EngineUnavailableError:
        return False
    return True


def require(name):
    try:
        return engines.load(name)
    except EngineUnavailableError as exc:
        pytest.skip(str(exc))


def blocked_library(tmp_path, name):
    """A folder that, first on the import path, makes ``import name`` fail as if it were not installed."""
    package = tmp_path / "blocked" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
    return str(tmp_path / "blocked")


# ---- the registry ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", engines.peer_names())
def test_a_peer_name_resolves_to_its_adapter(name):
    module = require(name)
    assert module.__name__ == engines.PEERS[name].module
    assert name in engines.available_names() and engines.version(name)


def test_a_missing_library_is_refused_with_the_install_line(tmp_path):
    """The library's import blocked: loading its short name raises with the line that installs the peers, and
    ``python -m xval check`` exits 2 with it."""
    require("opacus")
    env = {"PYTHONPATH": os.pathsep.join([blocked_library(tmp_path, "opacus"), ROOT])}
    code = (
        "from xval import engines\ntry:\n    engines.load('opacus')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    assert result.stdout.startswith("EngineUnavailableError this adapter needs 'opacus'"), result.stderr
    assert "pip install --no-deps backpack-for-pytorch" in result.stdout
    cli = run_cli("check", "opacus", "--cases", ONE_CASE, env=env)
    assert cli.returncode == 2 and "pip install --no-deps" in cli.stderr, cli.stderr


def test_check_judges_the_pending_quantities_a_library_implements():
    """``python -m xval check curvlinops``: the curvature quantities (contract.PENDING) are checked by default."""
    require("curvlinops")
    report = check.run_check("curvlinops", against=["manual"], cases=[ONE_CASE])
    statuses = {row.quantity: row.status for row in report.rows}
    assert {"ggn", "ggn_block", "empirical_fisher", "kfac_factors", "kfac_block", "top_eigenvalues"} <= set(statuses)
    assert all(status == "pass" for name, status in statuses.items() if status != "not implemented")
    assert {name for name, status in statuses.items() if status == "pass"} >= {
        "hvp",
        "hessian",
        "ggn",
        "ggn_block",
        "empirical_fisher",
        "kfac_factors",
        "kfac_block",
        "top_eigenvalues",
    }
    assert statuses["forward"] == "not implemented" and report.ok


def test_the_check_command_prints_verdicts_for_a_peer():
    require("backpack")
    result = run_cli("check", "backpack", "--cases", ONE_CASE, "--against", "manual")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"1/1 {ONE_CASE}: 7 passed" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("OK: 7 checks, 7 passed, 0 failed")


# ---- estimators as statistics --------------------------------------------------------------------------------------
def draws(mean, spread, shape=(), seeds=estimators.SEEDS):
    rng = np.random.default_rng(1)
    return [mean + spread * rng.standard_normal(shape) for _ in range(seeds)]


def test_an_unbiased_estimate_passes_and_a_factor_2_or_a_missing_1_over_n_fails():
    exact = np.array([[2.0, 0.5], [0.5, 1.0]])
    values = draws(exact, 0.05, (2, 2))
    assert estimators.judge(values, exact).status == "pass"
    for planted in (2.0, 1 / 5):
        statistic = estimators.judge([planted * v for v in values], exact)
        assert statistic.status == "fail" and statistic.z > estimators.Z, statistic


def test_a_pair_is_judged_part_by_part_and_an_estimate_too_noisy_is_not_checked():
    A, G = np.eye(3), np.diag([1.0, 2.0])
    values = [(A, g) for g in draws(G, 0.01, (2, 2))]
    assert estimators.judge(values, (A, G)).status == "pass"
    assert estimators.judge([(A, 2 * g) for _, g in values], (A, G)).status == "fail"
    noisy = estimators.judge(draws(1.0, 3.0), 1.0)
    assert noisy.status == "not checked" and "too noisy" in noisy.text()
    assert estimators.judge([1.0] * 4, 1.0).status == "pass"  # no spread, equal to rounding
    same = estimators.judge([1e-13] * 4, 2.7e-6)  # a saturated softmax: no draw reaches the rare labels
    assert same.status == "not checked" and "never varied it" in same.text()


def test_estimator_names_are_read_from_the_contract():
    quantities = conformance._all_quantities()
    assert estimators.parse("mc_ggn", quantities) == ("mc", "ggn")
    assert estimators.parse("hutchpp_hessian_trace", quantities) == ("hutchpp", "hessian_trace")
    assert estimators.parse("mc_kflr_factors", quantities) is None  # BackPACK's own layout: not the contract's
    assert estimators.parse("power_top_eigenvalues", quantities) is None


# ---- the matrix ----------------------------------------------------------------------------------------------------
def test_families_are_read_from_the_case_records():
    names = {cases.case_id(case): conformance.family(case) for case in cases.CASES}
    assert names["mlp-4x8x3-tanh-mse-N5"] == names["mlp-3x5x5x5x5x5x2-tanh-mse-N3"] == "mlp-tanh-mse"
    assert names["mlp-3x1-identity-mse-N1"] == "mlp-identity-mse"
    assert names["mlp-4x7x5x6x3-sigmoid+relu+softplus+tanh-mse-N5"] == "mlp-relu+sigmoid+softplus+tanh-mse"
    assert conformance.family(cases.LAYER_CASES[0]) == cases.LAYER_CASES[0]["name"]


def synthetic_matrix():
    entry = conformance.Entry
    families = {"mlp-tanh-mse": ["a", "b"], "mlp-relu-mse": ["c"]}
    entries = [
        entry("lib", "float64", "a", "mlp-tanh-mse", "ggn", "contract", "pass", 2e-16, "arbiter"),
        entry("lib", "float64", "b", "mlp-tanh-mse", "ggn", "contract", "fail", 0.5, "manual", "ggn vs manual: 0.5"),
        entry("lib", "float64", "c", "mlp-relu-mse", "ggn", "contract", "unsupported", None, "", "no relu rule"),
        entry("lib", "float64", "a", "mlp-tanh-mse", "mc_ggn", "estimator", "pass", 1.2, "manual"),
        entry(
            "lib",
            "float64",
            "a",
            "mlp-tanh-mse",
            "kfac_block",
            "convention",
            "convention",
            None,
            "",
            "weight and bias apart",
        ),
    ]
    return conformance.Matrix(
        [conformance.Library("lib", "1.0")],
        ["float64"],
        ["arbiter", "manual"],
        families,
        entries,
        16,
        {"float64": 1e-10},
    )


def test_the_markdown_names_failures_refusals_and_conventions_with_notes(tmp_path):
    matrix = synthetic_matrix()
    text = conformance_report.markdown(matrix)
    row = next(line for line in text.splitlines() if line.startswith("| mlp-tanh-mse (2) |"))
    assert "| 2e-16 (1/2), ✗ 0.5 1/2 [1] | conv. 1/2 [2] | z 1.2 (1/2) |" in row
    assert "| mlp-relu-mse (1) | unsup. [3] |" in text
    assert "1. fail (ggn, 1 case: b): ggn vs manual: 0.5" in text and "3. unsupported (1 case: c): no relu rule" in text
    assert "1 fails somewhere (lib ggn" in conformance_report.headline(matrix)
    markdown, payload = tmp_path / "m.md", tmp_path / "m.json"
    conformance_report.write(matrix, str(markdown), str(payload))
    again = conformance.from_json(json.loads(payload.read_text()))
    assert conformance_report.markdown(again) == markdown.read_text() == text


PLANTED = """
    import numpy as np
    import peers.curvlinops as _library


    def ggn(net, X, Y):  # a factor 2
        return 2 * _library.ggn(net, X, Y)


    def ggn_diagonal(net, X, Y):  # a batch mean taken twice
        return _library.ggn_diagonal(net, X, Y) / X.shape[0]


    def hvp(net, X, Y, v):  # layer 0's W laid out transposed
        value = _library.hvp(net, X, Y, v).copy()
        n_out, n_in = net.weights[0].shape
        value[:n_out * n_in] = value[:n_out * n_in].reshape(n_out, n_in).T.reshape(-1)
        return value


    def ggnvp(net, X, Y, v):  # untouched
        return _library.ggnvp(net, X, Y, v)


    def mc_ggn(net, X, Y, seed, samples):  # a Monte-Carlo estimate off by 2
        return 2 * _library.mc_ggn(net, X, Y, seed, samples)
    """


def test_a_planted_bug_in_an_adapter_fails_naming_the_quantity(tmp_path):
    """The mutation audit through the matrix: each planted bug is a failure of its own quantity, the rest passes."""
    require("curvlinops")
    path = tmp_path / "planted_curvlinops.py"
    path.write_text(textwrap.dedent(PLANTED))
    matrix = conformance.run([str(path)], cases=[ONE_CASE], dtypes=["float64"], against=["manual"])
    statuses = {entry.quantity: entry.status for entry in matrix.entries}
    assert statuses == {"ggn": "fail", "ggn_diagonal": "fail", "hvp": "fail", "ggnvp": "pass", "mc_ggn": "fail"}
    text = conformance_report.markdown(matrix)
    for quantity in ("ggn", "ggn_diagonal", "hvp", "mc_ggn"):
        assert re.search(rf"\d+\. fail \({quantity}, 1 case: {ONE_CASE}\)", text), text


def test_the_command_refuses_bad_arguments():
    assert "--dtypes" in run_cli("conformance", "--help").stdout
    bad = run_cli("conformance", "--dtypes", "float16", "--libraries", "opacus", "--output", os.devnull)
    assert bad.returncode == 2 and "dtype 'float16' is not supported" in bad.stderr, bad.stderr
    folder = run_cli("conformance", "--output", "no/such/folder/m.md")
    assert folder.returncode == 2 and "the folder" in folder.stderr


# ---- the committed matrix --------------------------------------------------------------------------------------------
def committed():
    with open(MATRIX_JSON) as handle:
        return conformance.from_json(json.load(handle))


def test_the_committed_markdown_is_written_from_the_committed_json():
    with open(MATRIX_MARKDOWN, encoding="utf-8") as handle:
        assert handle.read() == conformance_report.markdown(committed()), (
            "docs/conformance.md and docs/conformance.json differ: regenerate both with python -m xval conformance"
        )


def test_every_failure_in_the_committed_matrix_is_a_finding():
    """Each (library, quantity) that fails or raises anywhere in the matrix has an entry in docs/findings.md, "The
    field's libraries", that names it as ``matrix: library quantity``."""
    with open(FINDINGS, encoding="utf-8") as handle:
        findings = handle.read()
    section = " ".join(findings[findings.index("## The field's libraries") :].split())
    failing = {(entry.library, entry.quantity) for entry in committed().entries if entry.status in ("fail", "error")}
    missing = [
        f"{library} {quantity}"
        for library, quantity in sorted(failing)
        if not re.search(rf"matrix: {re.escape(library)} {re.escape(quantity)}\b", section)
    ]
    assert not missing, f"failures in docs/conformance.md with no finding in docs/findings.md: {missing}"


def _magnitude(value):
    return math.log10(max(abs(value), 1e-18))


def _agree(old, new):
    """The same status, and an error of the same order of magnitude (rounding differs between machines): within 1.5
    decades for a pass, 1 for a failure; an estimator's standard errors within 0.5."""
    if old.status != new.status:
        return False
    if old.error is None or new.error is None:
        return old.error is None and new.error is None
    if old.kind == conformance.ESTIMATOR:
        return abs(old.error - new.error) <= 0.5
    return abs(_magnitude(old.error) - _magnitude(new.error)) <= (1.5 if old.status == "pass" else 1.0)


@pytest.mark.conformance
@pytest.mark.parametrize("dtype, case", SAMPLE, ids=[f"{dtype}-{case}" for dtype, case in SAMPLE])
def test_the_committed_matrix_is_in_step_with_the_code(dtype, case):
    """Regenerate one case of the committed matrix for every installed library and compare statuses and orders of
    magnitude (``python -m xval conformance`` regenerates all of it)."""
    matrix = committed()
    libraries = [
        library.name for library in matrix.checked() if library.name in engines.PEERS and installed(library.name)
    ]
    if not libraries:
        pytest.skip(f"no library of the matrix is installed; install them with: {INSTALL}")
    fresh = conformance.run(libraries, cases=[case], dtypes=[dtype], against=matrix.against, seeds=matrix.seeds)
    old = {
        (e.library, e.quantity): e
        for e in matrix.entries
        if e.case == case and e.dtype == dtype and e.library in libraries
    }
    new = {(e.library, e.quantity): e for e in fresh.entries}
    assert old, f"the committed matrix has no {case} in {dtype}: regenerate it with python -m xval conformance"
    assert set(old) == set(new), (
        f"entries differ: only committed {sorted(set(old) - set(new))}, only now "
        f"{sorted(set(new) - set(old))}; regenerate with python -m xval conformance"
    )
    differ = [
        f"{key}: committed {old[key].status} {old[key].error}, now {new[key].status} {new[key].error}"
        for key in old
        if not _agree(old[key], new[key])
    ]
    assert not differ, (
        "the matrix is out of step with the code (regenerate it with python -m xval conformance):\n" + "\n".join(differ)
    )
