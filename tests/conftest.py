"""Fixtures: the case table, the selected engines, tolerances for ``XVAL_DTYPE``, and a closing table of the
worst relative error per (quantity, engine), with or without pytest-xdist. An invalid ``XVAL_*`` setting or an
engine that cannot be found stops the run before any test (``pytest_configure``)."""

import json
import os
import tempfile
from collections import defaultdict

import pytest
from hypothesis import settings as hypothesis_settings

from tests.helpers import all_engine_names, compared_engine_names, load_engine, selected_engines
from xval import compare, engines
from xval import config as xval_config
from xval import cases
from xval.cases import CASES, case_id, make
from xval.errors import EngineUnavailableError, XvalError

# CI (the CI variable set) draws the same property-test examples on every run; elsewhere each run draws new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

_RECORDS = []  # (quantity, engine, case id, relative error, against: "reference" or "arbiter"), in this process


@pytest.fixture(scope="session")
def dtype():
    return xval_config.dtype()


@pytest.fixture(scope="session")
def rtol(dtype):
    return compare.TOLERANCES[dtype]


@pytest.fixture(params=CASES, ids=[case_id(c) for c in CASES])
def case(request, dtype):
    """``(id, net, X, Y)`` for one case of the table, in ``XVAL_DTYPE``."""
    return (case_id(request.param), *make(request.param, dtype))


@pytest.fixture(params=CASES + cases.LAYER_CASES, ids=[case_id(c) for c in CASES + cases.LAYER_CASES])
def problem(request, dtype):
    """The ``contract.Problem`` of one case of the table, the multilayer perceptrons and the networks of every layer
    kind (``cases.LAYER_CASES``), in ``XVAL_DTYPE`` (network, data, targets, a direction)."""
    return cases.problem(request.param, dtype)


@pytest.fixture(params=compared_engine_names() or [None])
def engine(request):
    """``(name, engine)`` of one selected engine compared with ``manual`` (torch, jax, or yours)."""
    if request.param is None:
        pytest.skip("XVAL_BACKEND selects no engine to compare with manual (add torch, jax or your own)")
    return request.param, load_engine(request.param)


@pytest.fixture(params=all_engine_names())
def any_engine(request):
    """``(name, engine)`` of one engine: ``manual`` or a selected engine."""
    return request.param, load_engine(request.param)


@pytest.fixture
def record_error():
    """``record_error(quantity, engine, case_id, error, against="reference")`` feeds the closing worst-error table;
    ``against="arbiter"`` fills its arbiter column (the error against the high-precision truth)."""
    return lambda quantity, engine, case, error, against="reference": _RECORDS.append(
        (quantity, engine, case, float(error), against)
    )


# ---- the settings, checked once; the closing table, gathered from xdist workers through files -------
def pytest_configure(config):
    try:
        for setting in (
            xval_config.backends,
            xval_config.dtype,
            xval_config.device_present,
            xval_config.max_bytes,
            xval_config.arbiter_digits,
        ):
            setting()
        for name in selected_engines():  # e.g. XVAL_BACKEND=manual,tensorflow: stop rather than test other engines
            try:
                engines.load(name)
            except EngineUnavailableError:
                pass  # a missing package: its tests skip with the install hint
    except XvalError as exc:
        raise pytest.UsageError(f"invalid test settings: {exc}") from None
    if not hasattr(config, "workerinput"):
        config._xval_report_dir = tempfile.mkdtemp(prefix="xval-report-")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistReportDir())


class _XdistReportDir:
    """Hands the report folder to xdist workers (registered only when pytest-xdist is installed: the hook is
    xdist's)."""

    def pytest_configure_node(self, node):
        node.workerinput["xval_report_dir"] = node.config._xval_report_dir


def pytest_sessionfinish(session):
    cfg = session.config
    folder = cfg.workerinput["xval_report_dir"] if hasattr(cfg, "workerinput") else cfg._xval_report_dir
    worker = cfg.workerinput.get("workerid", "w") if hasattr(cfg, "workerinput") else "main"
    with open(os.path.join(folder, f"{worker}.json"), "w") as handle:
        json.dump(_RECORDS, handle)


def pytest_terminal_summary(terminalreporter, config):
    folder = getattr(config, "_xval_report_dir", None)
    if folder is None:
        return
    worst = defaultdict(lambda: (-1.0, ""))
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as handle:
            for quantity, engine, case, error, against in json.load(handle):
                if error > worst[quantity, engine, against][0]:
                    worst[quantity, engine, against] = (error, case)
    if not worst:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"worst relative error per quantity and engine ({xval_config.dtype()})")
    write(
        "vs reference: against manual (or the other oracle the row names); vs arbiter: against the high-precision "
        "truth, - where not compared"
    )
    write(f"{'quantity':<34} {'engine':<8} {'vs reference':>12}  {'case':<58} {'vs arbiter':>10}  case")
    for quantity, engine in sorted({(q, e) for q, e, _ in worst}):
        cells = []
        for against, width in (("reference", 12), ("arbiter", 10)):
            error, case = worst.get((quantity, engine, against), (None, ""))
            cells.append((f"{error:>{width}.2e}" if error is not None else f"{'-':>{width}}", case))
        (reference, reference_case), (arbiter, arbiter_case) = cells
        write(f"{quantity:<34} {engine:<8} {reference}  {reference_case:<58} {arbiter}  {arbiter_case}")
