"""The two reference engines agree with each other on the case table, for every quantity of the contract, the
released ones and the curvature quantities still pending: torch_ref (torch.func) and jax_ref (jax, jitted)
differentiate the same definitions by their own autodiff, so agreement to the contract's tolerance is the evidence
that each is right. Every case in float64; in float32 three cases (a softmax regression, mixed activations, saturated
units), since every jitted function compiles anew per case and dtype. Their agreement with manual and the arbiter is
``test_comparisons``' job."""
import numpy as np
import pytest

from tests.helpers import assert_matches_reference
from xval import cases, compare, contract

torch_ref = pytest.importorskip("torch_ref")
jax_ref = pytest.importorskip("jax_ref")

EVERY_QUANTITY = list(contract.QUANTITIES.values()) + list(contract.PENDING.values())
CASES = {cases.case_id(case): case for case in cases.CASES}
FLOAT32_CASES = ["mlp-4x3-identity-cross_entropy-soft-N5", "mlp-4x7x5x6x3-sigmoid+relu+softplus+tanh-mse-N5",
                 "mlp-4x6x3-tanh-cross_entropy-onehot-N5-saturated"]


def parts(value):
    """A result as a tuple of arrays (``kfac_factors`` gives two)."""
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("quantity", EVERY_QUANTITY, ids=lambda q: q.name)
@pytest.mark.parametrize("name", list(CASES))
def test_references_agree_on_the_case_table_in_float64(name, quantity):
    problem = cases.problem(CASES[name], "float64")
    for call in quantity.calls(problem):
        ours, theirs = parts(call.evaluate(torch_ref)), parts(call.evaluate(jax_ref))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            compare.assert_close(a, b, quantity.tolerance("float64"), f"{call.label} on {name}: torch_ref vs jax_ref")


@pytest.mark.parametrize("quantity", EVERY_QUANTITY, ids=lambda q: q.name)
@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_references_agree_on_the_case_table_in_float32(name, quantity):
    """Within float32's tolerance, or (saturated units, beyond float32's resolution in both) torch_ref at most twice
    as far from jax_ref's float64 value at the same inputs as jax_ref's float32 value is."""
    problem = cases.problem(CASES[name], "float32")
    exact_calls = quantity.calls(problem.astype("float64"))
    for call, exact in zip(quantity.calls(problem), exact_calls):
        ours, theirs = parts(call.evaluate(torch_ref)), parts(call.evaluate(jax_ref))
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_matches_reference(a, b, quantity.tolerance("float32"), f"{call.label} on {name} (float32)",
                                     "float32", lambda: parts(exact.evaluate(jax_ref))[index])
            assert np.asarray(a).dtype == np.float64  # the contract's plain functions return float64
