"""Fixtures: the case table, the selected engines, tolerances for ``XVAL_DTYPE``, and a closing table of the
worst relative error per (quantity, engine) — also under pytest-xdist. An invalid ``XVAL_*`` setting stops the
run before any test (``pytest_configure``)."""
import json
import os
import tempfile
from collections import defaultdict

import pytest
from hypothesis import settings as hypothesis_settings

import manual
from tests.cases import CASES, case_id, make
from manual import config
from xval import compare, engines

# CI (the CI variable set) draws the same property-test examples on every run; elsewhere each run draws new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

_RECORDS = []  # (quantity, engine, case id, relative error), in this process


def reference_engine_names():
    """The reference engines ``XVAL_BACKEND`` selects; none while it is invalid, which stops the run anyway."""
    try:
        return [name for name in config.backends() if name != "manual"]
    except manual.ConfigError:  # this module is imported before pytest_configure can report it
        return []


def all_engine_names():
    """``manual`` and the selected reference engines, for tests that check every engine on its own."""
    return ["manual", *reference_engine_names()]


def load_engine(name):
    """The engine module, or a skip that says what to install."""
    try:
        return engines.load(name)
    except manual.EngineUnavailableError as exc:
        pytest.skip(str(exc))


def assert_matches_reference(ours, theirs, rtol, what, dtype, exact):
    """``ours`` within ``rtol`` of the reference's ``theirs``; returns the relative error.

    In float32 a quantity can be beyond float32's resolution for every engine (saturated softmax: ``p (1 - p)``
    with ``1 - p`` below float32's epsilon). Then, and only in float32, it is judged against ``exact()``, the
    reference's own float64 evaluation at the same inputs: ``manual`` must be within ``rtol`` of it or at most twice
    as far from it as the reference is.
    """
    error = compare.relative_error(ours, theirs)
    if error <= rtol or dtype == "float64":
        return compare.assert_close(ours, theirs, rtol, what)
    truth = exact()
    ours_error, theirs_error = compare.relative_error(ours, truth), compare.relative_error(theirs, truth)
    assert ours_error <= max(rtol, 2 * theirs_error), (
        f"{what}: relative error {error:.3g} > {rtol:.1g}, and against the float64 reference manual is off by "
        f"{ours_error:.3g}, the float32 reference by {theirs_error:.3g}"
    )
    return error


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


@pytest.fixture(params=all_engine_names())
def any_engine(request):
    """``(name, module)`` of one engine: ``manual`` or a selected reference engine."""
    return request.param, load_engine(request.param)


@pytest.fixture
def record_error():
    """``record_error(quantity, engine, case_id, error)`` feeds the closing worst-error table."""
    return lambda quantity, engine, case, error: _RECORDS.append((quantity, engine, case, float(error)))


# ---- the settings, checked once; the closing table, gathered from xdist workers through files -------
def pytest_configure(config):
    try:
        for setting in (manual.config.backends, manual.config.dtype, manual.config.device, manual.config.max_bytes):
            setting()
    except manual.ConfigError as exc:  # e.g. XVAL_BACKEND=manual,tensorflow: stop rather than test other engines
        raise pytest.UsageError(f"invalid test settings: {exc}") from None
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
    terminalreporter.section(f"worst relative error per quantity and engine ({manual.config.dtype()})")
    write(f"{'quantity':<34} {'engine':<8} {'worst rel. error':>16}  case")
    for (quantity, engine), (error, case) in sorted(worst.items()):
        write(f"{quantity:<34} {engine:<8} {error:>16.2e}  {case}")
