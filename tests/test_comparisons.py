"""Every case x quantity x reference engine: the manual engine agrees with torch and jax."""
import numpy as np
import pytest

import manual
from xval import compare

QUANTITIES = ["forward", "loss", "gradient", "per_sample_gradients"]


def call(module, quantity, net, X, Y):
    return getattr(module, quantity)(net, X) if quantity == "forward" else getattr(module, quantity)(net, X, Y)


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_manual_matches_reference(case, quantity, engine, rtol, record_error):
    case_name, net, X, Y = case
    name, module = engine
    ours = call(manual, quantity, net, X, Y)
    theirs = call(module, quantity, net, X, Y)
    assert np.asarray(ours).dtype == np.float64 and np.asarray(theirs).dtype == np.float64
    error = compare.assert_close(ours, theirs, rtol, f"{quantity} manual vs {name} on {case_name}")
    record_error(quantity, name, case_name, error)


def test_mean_of_per_sample_gradients_is_gradient(case, rtol, record_error):
    case_name, net, X, Y = case
    rows = manual.per_sample_gradients(net, X, Y)
    assert rows.shape == (X.shape[0], net.n_params)
    error = compare.assert_close(rows.mean(axis=0), manual.gradient(net, X, Y), rtol, f"mean per-sample gradient on {case_name}")
    record_error("mean(per_sample) vs gradient", "manual", case_name, error)


def test_finite_difference_gradient(case, dtype, record_error):
    case_name, net, X, Y = case
    fd = manual.finite_difference_gradient(net, X, Y)
    tol = compare.FINITE_DIFFERENCE_TOLERANCES[dtype]
    error = compare.assert_close(manual.gradient(net, X, Y), fd, tol, f"gradient vs finite differences on {case_name}")
    record_error("gradient vs finite differences", "fd", case_name, error)
