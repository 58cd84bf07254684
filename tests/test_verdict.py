"""Disagreement reports (``xval.verdict``): the rounding floor, a planted wrong entry named as that engine's error
against the arbiter, and the saturated softmax reported as a precision loss below the floor, never as a plain
failure."""

import mpmath
import numpy as np
import pytest

import manual
from tests.helpers import assert_matches_reference
from xval import cases, engines, verdict
from xval.contract import QUANTITIES

arbiter = pytest.importorskip("xval.arbiter")
numbers = arbiter.numbers

SATURATED = dict(sizes=[4, 3], activations=["identity"], loss="cross_entropy", targets="soft", n=5, weight_scale=1000.0)
PLANTED = '''
"""manual with one wrong Hessian entry (and its mirror), as a student's slip would leave it."""
import manual

forward, loss, gradient, hvp = manual.forward, manual.loss, manual.gradient, manual.hvp


def hessian(net, X, Y):
    H = manual.hessian(net, X, Y).copy()
    H[2, 3] += 1e-3
    H[3, 2] += 1e-3
    return H
'''


def test_the_floor_of_a_cancelling_sum_is_the_size_of_its_terms():
    """(1 + 1e-20) - 1 is 1e-20, but float64 cannot tell it from 0 or 2.2e-16: its floor is about u * 1,
    not u * 1e-20."""
    unit = 2.0**-53
    with mpmath.workdps(40):
        one = numbers.Bounded(mpmath.mpf(1), mpmath.mpf(0), unit)
        difference = (one + mpmath.mpf("1e-20")) - 1
        assert abs(difference.value - mpmath.mpf("1e-20")) < mpmath.mpf("1e-35")
        assert unit <= difference.error <= 3 * unit  # one rounding of 1 + 1e-20, one of the tiny result
        product = one * mpmath.mpf(3) * mpmath.mpf("0.5")
        assert 2 * 1.5 * unit >= product.error >= 1.5 * unit  # relative: u per operation, no cancellation


def test_floor_of_softplus_curvature_comes_from_the_terms_that_cancel():
    """softplus''(x) by the chain rule of log(1 + exp(x)) is e^x/(1+e^x) - e^2x/(1+e^x)^2: at x = 37.4 two terms of
    size 1 cancel to 5.6e-17, so the floor is about u, far above the value, while at x = 0 it is u * 0.25."""
    with mpmath.workdps(40):
        for x, floor_over_value in ((37.42994775023705, 1.0), (0.0, 1e-14)):
            v = numbers.Dual(numbers.Dual(numbers.Bounded(mpmath.mpf(x), 0, 2.0**-53), 1), 1)
            second = numbers.log1p(numbers.exp(v)).tangent.tangent  # d2/dx2 of log(1 + exp(x))
            exact = mpmath.exp(x) / (1 + mpmath.exp(x)) ** 2
            assert abs(second.value - exact) < mpmath.mpf("1e-35")
            assert (second.error / exact > floor_over_value) == (x > 1)


def test_planted_wrong_entry_is_named_as_that_engines_error(tmp_path):
    path = tmp_path / "planted_hessian.py"
    path.write_text(PLANTED)
    student = engines.load(str(path))
    problem = cases.problem(cases.CASES[6])  # mlp-5x1x4-tanh-mse-N4
    call = QUANTITIES["hessian"].calls(problem)[0]
    judged = verdict.judge(call, {"manual": call.evaluate(manual), "student": call.evaluate(student)}, 1e-10)
    assert judged.wrong == ["student"]
    text = judged.text()
    assert "arbiter: student is wrong" in text and ("at index (2, 3)" in text or "at index (3, 2)" in text), text
    manual_line = next(line for line in text.splitlines() if line.strip().startswith("manual"))
    assert "agrees" in manual_line
    with pytest.raises(AssertionError, match=r"(?s)relative error .* > tolerance.*arbiter: student is wrong"):
        assert_matches_reference(
            call.evaluate(manual),
            call.evaluate(student),
            1e-10,
            "hessian manual vs student",
            "float64",
            None,
            call,
            ("manual", "student"),
        )


def test_saturated_softmax_is_a_precision_loss_below_the_floor_not_a_failure():
    torch_ref = pytest.importorskip("torch_ref")
    jax_ref = pytest.importorskip("jax_ref")
    problem = cases.problem(SATURATED)
    for quantity in ("hvp", "hessian"):
        call = QUANTITIES[quantity].calls(problem)[0]
        results = {
            name: call.evaluate(module) for name, module in (("manual", manual), ("torch", torch_ref), ("jax", jax_ref))
        }
        judged = verdict.judge(call, results, 1e-10)
        assert judged.decided and judged.wrong == []
        assert {"torch", "jax"} <= set(judged.lost_digits), judged.text()
        assert "manual" not in judged.lost_digits, judged.text()  # manual keeps the digits (next test)
        assert "below the rounding floor" in judged.summary() and "no engine is wrong" in judged.summary()
        # the figures: the floor per entry (terms of size ~1 cancel) is far above the truth (~1e-39)
        assert judged.largest_floor > 1e-14 and judged.truth_norm < 1e-38
        # the comparison test passes it, instead of failing with a 70% "disagreement"
        assert_matches_reference(
            results["manual"], results["torch"], 1e-10, "", "float64", None, call, ("manual", "torch")
        )


def test_manual_agrees_with_the_arbiter_on_the_saturated_softmax():
    """manual computes log p, 1 - p and p (1 - p) to full relative accuracy, so it keeps the curvature of 1e-39 that
    torch and jax round to 0: every quantity within a few units of 1e-16 of the arbiter."""
    problem = cases.problem(SATURATED)
    for quantity in ("loss", "gradient", "per_sample_gradients", "hvp", "hessian"):
        call = QUANTITIES[quantity].calls(problem)[0]
        ours, truth = call.evaluate(manual), call.evaluate(arbiter)
        error = np.linalg.norm(ours - truth) / np.linalg.norm(truth)
        assert error < 1e-14, f"{quantity}: manual vs arbiter {error:.3g}"
    H = QUANTITIES["hessian"].calls(problem)[0].evaluate(arbiter)
    assert 0 < np.max(np.abs(H)) < 1e-30  # the regime: every curvature entry far below float64's resolution of 1 - p


def test_all_within_rounding_and_no_verdict_beyond_the_limits():
    problem = cases.problem(cases.CASES[6])  # mlp-5x1x4-tanh-mse-N4
    call = QUANTITIES["gradient"].calls(problem)[0]
    judged = verdict.judge(call, {"manual": call.evaluate(manual)}, 1e-10)
    assert judged.summary() == "arbiter: all engines are within rounding of the truth"
    big = cases.problem(dict(sizes=[10, 30, 10], activations="tanh", loss="mse", n=20))
    call = QUANTITIES["hessian"].calls(big)[0]
    judged = verdict.judge(call, {"manual": np.zeros(call.shape)}, 1e-10)
    assert not judged.decided and "no verdict" in judged.summary() and "N * P * K" in judged.summary()


def test_check_names_the_wrong_engine_with_the_arbiter():
    from xval.check import format_report, run_check

    report = run_check(
        "examples/engines/planted_bug.py",
        against=("manual",),
        quantities=["hvp"],
        cases=["mlp-4x8x3-sigmoid-cross_entropy-onehot-N7"],
    )
    short, text = format_report(report), format_report(report, verbose=True)
    assert "arbiter: planted_bug.py is wrong (beyond the rounding floor)" in short  # the verdict, in one line
    assert "arbiter: planted_bug.py is wrong (beyond the rounding floor)" in text
    assert "manual     error vs arbiter" in text and text.rstrip().endswith("1 failed (hvp)")
    assert "manual     error vs arbiter" not in short  # each engine's line: only with --verbose


def test_check_passes_a_difference_below_the_floor_and_says_so():
    """python -m xval check torch --against arbiter on the saturated softmax: torch is 71% off the truth, all of it
    below the rounding floor, so the row passes with the arbiter's verdict instead of failing."""
    torch_ref = pytest.importorskip("torch_ref")
    from xval.check import _check_row, _References

    problem = cases.problem(SATURATED)
    row = _check_row(
        torch_ref, _References({"arbiter": arbiter}), ["arbiter"], problem, QUANTITIES["hvp"], "float64", "torch"
    )
    assert row.status == "pass" and row.errors["arbiter"] > 0.5  # a 71% "disagreement" with the truth...
    assert (
        "below the rounding floor" in row.detail and "no engine is wrong" in row.detail
    )  # ...that float64 cannot resolve


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_infinite_entry_is_wrong_never_below_the_floor(bad):
    """On main ``difference > allowed`` was False for NaN, so a NaN entry was "lost digits" and its row passed."""
    problem = cases.problem(cases.CASES[6])  # mlp-5x1x4-tanh-mse-N4
    for quantity in ("loss", "gradient", "hessian"):
        call = QUANTITIES[quantity].calls(problem)[0]
        values = call.evaluate(manual).copy()
        values.reshape(-1)[0] = bad
        judged = verdict.judge(call, {"manual": call.evaluate(manual), "nan_engine": values}, 1e-10)
        assert judged.decided and judged.wrong == ["nan_engine"], judged.text()
        assert "1 entries beyond the floor" in judged.text()


def test_relative_error_is_infinite_for_nan_and_unmatched_infinities():
    from xval import compare

    assert compare.relative_error([np.nan], [1.0]) == np.inf
    assert compare.relative_error([1.0], [np.nan]) == np.inf
    assert compare.relative_error([np.nan], [np.nan]) == np.inf  # NaN agrees with nothing, itself included
    assert compare.relative_error([np.inf, 1.0], [1.0, 1.0]) == np.inf
    assert compare.relative_error([np.inf, 1.0], [-np.inf, 1.0]) == np.inf
    assert compare.relative_error([np.inf, 1.0], [np.inf, 1.0]) == 0.0  # the same infinity: the finite rest compared
    assert compare.relative_error([np.inf, 1.0], [np.inf, 2.0]) == 0.5
    assert compare.relative_error([1e308, 1e308], [-1e308, -1e308]) == 2.0  # no norm overflows on the way
    with pytest.raises(AssertionError, match="relative error inf > tolerance"):
        compare.assert_close(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), 1e-10, "gradient")


def test_no_verdict_when_the_truth_is_not_finite(monkeypatch):
    problem = cases.problem(cases.CASES[6])
    call = QUANTITIES["loss"].calls(problem)[0]
    monkeypatch.setattr(arbiter, "compute", lambda *args: np.array(np.inf))
    judged = verdict.judge(call, {"manual": np.array(np.inf)}, 1e-10)
    assert not judged.decided and "not finite" in judged.summary()
