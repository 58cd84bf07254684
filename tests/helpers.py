"""Helpers shared by the tests: the selected engines, loading one (or a skip saying what to install), the
comparison against a reference (arbitrated by the high-precision arbiter when it fails), and the central-difference
oracle."""

import math
import os
import subprocess
import sys
import textwrap

import pytest

from xval import compare, config, engines, verdict
from xval.errors import ConfigError, EngineUnavailableError, XvalError


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDENT = os.path.join(ROOT, "examples", "engines", "student_backprop.py")


def run_cli(*args, env=None, cwd=ROOT, timeout=600):
    """``python -m xval ARGS`` run as a user would (a fresh interpreter), with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "xval", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def engine_file(folder, name, source, student=False):
    """A ``.py`` engine ``name`` in ``folder`` holding ``source`` (dedented), after the student engine's code when
    ``student``; returns its path as a string."""
    text = (open(STUDENT).read() + "\n\n" if student else "") + textwrap.dedent(source)
    path = os.path.join(str(folder), name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def selected_engines():
    """The engines ``XVAL_BACKEND`` names; none while it is invalid, which stops the run anyway."""
    try:
        return config.backends()
    except ConfigError:  # this module is imported before pytest_configure can report it
        return []


def baseline_engine():
    """The engine the others are compared with: ``manual`` when selected, else the first selected engine."""
    names = selected_engines()
    return "manual" if "manual" in names or not names else names[0]


def compared_engine_names():
    """The selected engines other than the baseline: each is compared with it."""
    return [name for name in selected_engines() if name != baseline_engine()]


def all_engine_names():
    """Every selected engine, and ``manual``, for tests that check each engine on its own."""
    return list(dict.fromkeys(["manual", *selected_engines()]))


def beyond_arbiter_limits(exc):
    """Whether ``exc`` is the arbiter refusing a problem beyond its size limits (a skip, not a failure)."""
    arbiter = sys.modules.get("xval.arbiter")
    return arbiter is not None and isinstance(exc, arbiter.ArbiterLimitError)


def skip_beyond_limits(function, name):
    """``function`` such that the arbiter's refusal of a too-large problem skips the test, naming the limit."""

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except XvalError as exc:
            if beyond_arbiter_limits(exc):
                pytest.skip(f"engine {name!r}: {exc}")
            raise

    return call


class Engine:
    """An engine module for the tests: a contract function it lacks is a skip ("not implemented"), not a failure,
    and so is a problem beyond the arbiter's size limits."""

    def __init__(self, name, module):
        self.name, self.module = name, module

    def __getattr__(self, attribute):
        value = getattr(self.module, attribute, None)
        if value is None:
            pytest.skip(f"engine {self.name!r} does not implement {attribute} (not implemented: skipped)")
        return skip_beyond_limits(value, self.name) if callable(value) else value


def load_engine(name):
    """The engine ``name`` wrapped in ``Engine``, or a skip that says what to install."""
    try:
        return Engine(name, engines.load(name))
    except EngineUnavailableError as exc:
        pytest.skip(str(exc))


def assert_matches_reference(ours, theirs, rtol, what, dtype, exact, call=None, names=("manual", "reference")):
    """``ours`` within ``rtol`` of the reference's ``theirs``; returns the relative error.

    When they disagree and ``call`` (the ``contract.Call`` that produced them) is given, the arbiter judges both
    (``xval.verdict``, ``names`` their engine names): the test passes when neither is wrong (the difference is below
    the rounding floor), and otherwise fails with the arbiter's report naming the wrong engine.

    In float32 a quantity can be beyond float32's resolution for every engine (saturated softmax: ``p (1 - p)``
    with ``1 - p`` below float32's epsilon). Then, and only in float32, it is judged against ``exact()``, the
    reference's own float64 evaluation at the same inputs: the engine under test must be within ``rtol`` of it or at
    most twice as far from it as the reference is.
    """
    try:
        return _assert_matches_reference(ours, theirs, rtol, what, dtype, exact)
    except AssertionError as failure:
        if call is None:
            raise
        judged = verdict.judge(call, dict(zip(names, (ours, theirs))), rtol, dtype)
        if judged.decided and not judged.wrong:
            return compare.relative_error(ours, theirs)
        raise AssertionError(f"{failure}\n{judged.text()}") from None


def _assert_matches_reference(ours, theirs, rtol, what, dtype, exact):
    error = compare.relative_error(ours, theirs)
    if error <= rtol or dtype == "float64":
        return compare.assert_close(ours, theirs, rtol, what)
    truth = exact()
    ours_error, theirs_error = compare.relative_error(ours, truth), compare.relative_error(theirs, truth)
    # a reference that is itself not finite (an infinite error) excuses nothing
    assert ours_error <= rtol or (math.isfinite(theirs_error) and ours_error <= 2 * theirs_error), (
        f"{what}: relative error {error:.3g} > {rtol:.1g}, and against the float64 reference the engine is off by "
        f"{ours_error:.3g}, the float32 reference by {theirs_error:.3g}"
    )
    return error


def central_difference(f, x, direction, step):
    """``(f(x + step direction) - f(x - step direction)) / (2 step)``: the derivative of ``f`` at ``x`` along
    ``direction``, with an O(step^2) truncation error. The finite-difference oracle of every test."""
    return (f(x + step * direction) - f(x - step * direction)) / (2 * step)
