"""The case table: each case is data (architecture, loss, targets, batch, seed), installed with the suite so that
code outside this repository can run it (``python -m xval check`` does).

Ids read like ``mlp-4x8x3-tanh-mse-N5``. ``make`` turns a case into ``(net, X, Y)`` in a dtype, ``problem`` into a
``contract.Problem`` (with a unit direction ``v`` for ``hvp``).
"""
import numpy as np

from . import definitions
from .contract import Problem
from .errors import unknown_name
from .network import Network

CASES = [
    # depth 1: linear regression and softmax regression
    dict(sizes=[3, 1], activations=["identity"], loss="mse", n=1),
    dict(sizes=[4, 3], activations=["identity"], loss="cross_entropy", targets="soft", n=5),
    # one hidden layer, each activation
    dict(sizes=[4, 8, 3], activations="tanh", loss="mse", n=5),
    dict(sizes=[4, 8, 3], activations="sigmoid", loss="cross_entropy", targets="onehot", n=7),
    dict(sizes=[3, 6, 6, 2], activations="relu", loss="mse", n=8),
    dict(sizes=[3, 6, 6, 2], activations="softplus", loss="cross_entropy", targets="soft", n=6),
    # a width-1 bottleneck
    dict(sizes=[5, 1, 4], activations="tanh", loss="mse", n=4),
    # different activations per layer, non-identity outputs
    dict(sizes=[4, 7, 5, 6, 3], activations=["sigmoid", "relu", "softplus", "tanh"], loss="mse", n=5),
    dict(sizes=[3, 5, 4, 3], activations=["softplus", "tanh", "sigmoid"], loss="cross_entropy", targets="onehot", n=1),
    # depth 6
    dict(sizes=[3, 5, 5, 5, 5, 5, 2], activations="tanh", loss="mse", n=3),
    dict(sizes=[2, 4, 4, 4, 4, 4, 3], activations=["tanh", "sigmoid", "relu", "softplus", "tanh", "identity"], loss="cross_entropy", targets="soft", n=4),
    # saturated units from large weights
    dict(sizes=[4, 6, 6, 3], activations="sigmoid", loss="mse", n=5, weight_scale=30.0, tag="saturated"),
    dict(sizes=[4, 6, 3], activations="tanh", loss="cross_entropy", targets="onehot", n=5, weight_scale=20.0, tag="saturated"),
    # near-zero gradients: vanishing through tiny weights, and targets the network almost fits
    dict(sizes=[4, 6, 6, 6, 6, 2], activations="tanh", loss="mse", n=3, weight_scale=0.05, tag="vanishing"),
    dict(sizes=[3, 8, 2], activations="softplus", loss="mse", targets="near_fit", n=6),
]


def case_id(case):
    """``mlp-4x8x3-tanh-mse-N5``: sizes, activations (once when all hidden are equal), loss, batch, tag."""
    acts = case["activations"]
    acts = acts if isinstance(acts, str) else "+".join(acts)
    parts = ["mlp", "x".join(map(str, case["sizes"])), acts, case["loss"]]
    if case.get("targets") and case["targets"] != "regression":
        parts.append(case["targets"])
    parts.append(f"N{case['n']}")
    if case.get("tag"):
        parts.append(case["tag"])
    return "-".join(parts)


# How far near-fit targets sit from the outputs: far enough above the dtype's rounding of the outputs
# that the residual, and so the gradient, is still determined to the comparison tolerance.
NEAR_FIT_RESIDUAL = {"float64": 1e-4, "float32": 1e-1}


def make_targets(kind, rng, net, X, dtype):
    n, k = X.shape[0], net.sizes[-1]
    if kind == "onehot":
        return np.eye(k)[rng.integers(0, k, size=n)]
    if kind == "soft":
        logits = rng.standard_normal((n, k))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == "near_fit":
        return definitions.outputs(net, X) + NEAR_FIT_RESIDUAL[dtype] * rng.standard_normal((n, k))
    return rng.standard_normal((n, k))


def make(case, dtype="float64", seed=0):
    """``(net, X, Y)`` for ``case``, the network and data in ``dtype``."""
    net = Network.random(case["sizes"], case["activations"], case["loss"], seed=seed, weight_scale=case.get("weight_scale", 1.0))
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((case["n"], case["sizes"][0]))
    Y = make_targets(case.get("targets", "regression"), rng, net, X, dtype)
    return net.astype(dtype), X.astype(dtype), Y.astype(dtype)


def unit_direction(net, seed=0):
    """A random unit direction ``(P,)`` in the network's dtype (for ``hvp``)."""
    v = np.random.default_rng(seed).standard_normal(net.n_params)
    return (v / np.linalg.norm(v)).astype(net.dtype)


def problem(case, dtype="float64", seed=0):
    """The ``contract.Problem`` of ``case`` in ``dtype``: its network, data, targets and a unit direction."""
    net, X, Y = make(case, dtype, seed)
    return Problem(case_id(case), net, X, Y, unit_direction(net, seed))


def select(names=None):
    """The cases whose ids are in ``names`` (all when ``None``), in table order; an error naming an unknown id."""
    if names is None:
        return list(CASES)
    by_id = {case_id(case): case for case in CASES}
    unknown = [name for name in names if name not in by_id]
    if unknown:
        raise unknown_name("case", unknown[0], by_id)
    return [by_id[name] for name in names]
