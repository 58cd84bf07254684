"""Fixtures: the case table, the selected reference engines, tolerances for ``XVAL_DTYPE``, and a
closing table of the worst relative error per (quantity, engine) — also under pytest-xdist."""
import json
import os
import tempfile
from collections import defaultdict

import pytest

import manual
from tests.cases import CASES, case_id, make
from manual import config
from xval import compare, engines

_RECORDS = []  # (quantity, engine, case id, relative error), in this process


def reference_engine_names():
    try:
        return [name for name in config.backends() if name != "manual"]
    except manual.ConfigError as exc:  # reported by the config tests; run the rest with the defaults
        print(f"warning: {exc}")
        return ["torch", "jax"]


def load_engine(name):
    """The engine module, or a skip that says what to install."""
    try:
        return engines.load(name)
    except manual.EngineUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def dtype():
    return config.dtype()


@pytest.fixture(scope="session")
def rtol(dtype):
    return compare.TOLERANCES[dtype]


@pytest.fixture(params=CASES, ids=[case_id(c) for c in CASES])
def case(request, dtype):
    """``(id, net, X, Y)`` for one case of the table, in ``XVAL_DTYPE``."""
    return (case_id(request.param), *make(request.param, dtype))


@pytest.fixture(params=reference_engine_names() or [None])
def engine(request):
    """``(name, module)`` of one selected reference engine."""
    if request.param is None:
        pytest.skip("XVAL_BACKEND selects no reference engine (add torch or jax)")
    return request.param, load_engine(request.param)


@pytest.fixture
def record_error():
    """``record_error(quantity, engine, case_id, error)`` feeds the closing worst-error table."""
    return lambda quantity, engine, case, error: _RECORDS.append((quantity, engine, case, float(error)))


# ---- the closing table, gathered from xdist workers through files ---------------------------------
def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config._xval_report_dir = tempfile.mkdtemp(prefix="xval-report-")


def pytest_configure_node(node):  # xdist hook, controller side
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
            for quantity, engine, case, error in json.load(handle):
                if error > worst[quantity, engine][0]:
                    worst[quantity, engine] = (error, case)
    if not worst:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"worst relative error per quantity and engine ({config_dtype()})")
    write(f"{'quantity':<34} {'engine':<8} {'worst rel. error':>16}  case")
    for (quantity, engine), (error, case) in sorted(worst.items()):
        write(f"{quantity:<34} {engine:<8} {error:>16.2e}  {case}")


def config_dtype():
    try:
        return config.dtype()
    except manual.ConfigError:
        return "float64"
