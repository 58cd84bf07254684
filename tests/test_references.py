"""The two reference engines agree with each other on the case table, for every quantity of the contract, the
released ones and the curvature quantities still pending: torch_ref (torch.func) and jax_ref (jax, jitted)
differentiate the same definitions by their own autodiff, so agreement to the contract's tolerance is the evidence
that each is right. Every case in float64, the plain MLPs and the networks of other layer kinds; in float32 three
cases (a softmax regression, saturated units, a convolution with max pooling), since every jitted function compiles
anew per case and dtype. Where a quantity is not defined (KFAC of a layer that is not a Dense layer of its own), both
refuse it. Their agreement with manual and the arbiter is ``test_comparisons``' job."""

import pytest

from tests.helpers import assert_matches_reference
from xval import cases, compare, contract
from xval.errors import UnsupportedError

torch_ref = pytest.importorskip("torch_ref")
jax_ref = pytest.importorskip("jax_ref")

EVERY_QUANTITY = list(contract.QUANTITIES.values()) + list(contract.PENDING.values())
CASES = {cases.case_id(case): case for case in cases.CASES + cases.LAYER_CASES}
FLOAT32_CASES = [
    "mlp-4x3-identity-cross_entropy-soft-N5",
    "mlp-4x6x3-tanh-cross_entropy-onehot-N5-saturated",
    "layers-conv2d-tanh-maxpool-cross_entropy-N3",
]


def parts(value):
    """A result as a tuple of arrays (``kfac_factors`` gives two)."""
    return value if isinstance(value, tuple) else (value,)


def calls_of(quantity, problem):
    """The calls of ``quantity`` on ``problem``. ``kfac_factors``' shape needs a Dense layer, so its calls are refused
    before any engine runs where the layer is none: then both references must refuse it too (skipped with the
    reason)."""
    try:
        return quantity.calls(problem)
    except UnsupportedError as refusal:
        net = problem.net
        values = {
            "X": problem.X,
            "Y": problem.Y,
            "v": problem.v,
            "l": contract.same_layer_block(net)[0],
            "m": contract.same_layer_block(net)[1],
            "k": 1,
        }
        for engine in (torch_ref, jax_ref):
            with pytest.raises(UnsupportedError):
                getattr(engine, quantity.name)(net, *(values[name] for name in quantity.parameters))
        pytest.skip(f"both references refuse {quantity.name}: {refusal}")


def both(call):
    """``(torch_ref's value, jax_ref's value)`` of ``call`` as tuples of arrays; when torch_ref refuses the network
    (a quantity it does not define there), jax_ref must refuse it too, and the test is skipped with the reason."""
    try:
        ours = call.evaluate(torch_ref)
    except UnsupportedError as refusal:
        with pytest.raises(UnsupportedError):
            call.evaluate(jax_ref)
        pytest.skip(f"both references refuse {call.label}: {refusal}")
    return parts(ours), parts(call.evaluate(jax_ref))


@pytest.mark.parametrize("quantity", EVERY_QUANTITY, ids=lambda q: q.name)
@pytest.mark.parametrize("name", list(CASES))
def test_references_agree_on_the_case_table_in_float64(name, quantity):
    problem = cases.problem(CASES[name], "float64")
    for call in calls_of(quantity, problem):
        ours, theirs = both(call)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            compare.assert_close(a, b, quantity.tolerance("float64"), f"{call.label} on {name}: torch_ref vs jax_ref")


@pytest.mark.parametrize("quantity", EVERY_QUANTITY, ids=lambda q: q.name)
@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_references_agree_on_the_case_table_in_float32(name, quantity):
    """Within float32's tolerance, or (saturated units, beyond float32's resolution in both) torch_ref at most twice
    as far from jax_ref's float64 value at the same inputs as jax_ref's float32 value is."""
    problem = cases.problem(CASES[name], "float32")
    calls = calls_of(quantity, problem)
    for call, exact in zip(calls, quantity.calls(problem.astype("float64"))):
        ours, theirs = both(call)
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_matches_reference(
                a,
                b,
                quantity.tolerance("float32"),
                f"{call.label} on {name} (float32)",
                "float32",
                lambda: parts(exact.evaluate(jax_ref))[index],
            )
