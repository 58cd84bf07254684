"""The curvature libraries' adapters (``peers/``) against direct torch.func computations of each definition
(``tests/peers_oracle.py``), in float64, to 1e-10 relative: case x library x quantity.

A library that is not installed is skipped with the install line. What a library cannot compute (a module it has
no rule for, targets it does not take) must be refused with a specific error, never returned wrong.
"""

import functools
import re
import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import scipy.linalg

from xval import Network, estimators
from xval.errors import ArgumentError, EngineUnavailableError

torch = pytest.importorskip("torch")

from tests.peers_oracle import Oracle, relative_error  # noqa: E402

TOLERANCE = 1e-10  # float64, every library computing exactly

# Small networks: every activation the libraries share, both losses, one-hot and soft targets, N = 1 and N = 5.
CASES = [
    dict(sizes=[3, 4, 3], activations="tanh", loss="mse", n=1),
    dict(sizes=[3, 4, 3], activations="tanh", loss="mse", n=5),
    dict(sizes=[3, 5, 4, 3], activations="sigmoid", loss="cross_entropy", targets="onehot", n=1),
    dict(sizes=[3, 5, 4, 3], activations="sigmoid", loss="cross_entropy", targets="onehot", n=5),
    dict(sizes=[2, 4, 4, 3], activations="relu", loss="mse", n=5),
    dict(sizes=[2, 4, 4, 3], activations="relu", loss="cross_entropy", targets="soft", n=5),
    dict(sizes=[3, 4, 2], activations="softplus", loss="cross_entropy", targets="onehot", n=5),
]


def case_id(case):
    parts = ["mlp", "x".join(map(str, case["sizes"])), case["activations"], case["loss"]]
    if case.get("targets"):
        parts.append(case["targets"])
    return "-".join(parts) + f"-N{case['n']}"


@dataclass(frozen=True)
class Problem:
    name: str
    net: object
    X: np.ndarray
    Y: np.ndarray
    v: np.ndarray
    oracle: Oracle
    targets: str

    @property
    def last(self):
        return self.net.n_layers - 1


@functools.lru_cache(maxsize=None)
def problem(index):
    case = CASES[index]
    rng = np.random.default_rng(index)
    net = Network.random(case["sizes"], case["activations"], case["loss"], seed=index)
    X = rng.standard_normal((case["n"], case["sizes"][0]))
    k = case["sizes"][-1]
    if case.get("targets") == "onehot":
        Y = np.eye(k)[rng.integers(0, k, size=case["n"])]
    elif case.get("targets") == "soft":
        Y = rng.dirichlet(np.ones(k), size=case["n"])
    else:
        Y = rng.standard_normal((case["n"], k))
    v = rng.standard_normal(net.n_params)
    return Problem(case_id(case), net, X, Y, v, Oracle(net, X, Y), case.get("targets", "regression"))


def adapter(library):
    """The adapter module ``peers.<library>``, or a skip carrying its install line."""
    try:
        return importlib.import_module(f"peers.{library}")
    except EngineUnavailableError as exc:
        pytest.skip(str(exc))


def separate_kron(o, net, l):
    """BackPACK's/curvlinops' default layout from the definition: weight ``kron(G, A[:-1, :-1])``, bias ``G``."""
    A, G = o.kfac_factors(l)
    return scipy.linalg.block_diag(np.kron(G, A[:-1, :-1]), G)


def block_diagonal_kron(o, net):
    return scipy.linalg.block_diag(*[separate_kron(o, net, l) for l in range(net.n_layers)])


@dataclass(frozen=True)
class Check:
    """One quantity of one library: how to call the adapter, what the definition gives, and which problems the
    library takes (``None``: all)."""

    library: str
    label: str
    call: Callable
    expected: Callable
    takes: Callable = None


def _parameter_block(o, p, l, which, matrix):
    rows = p.net.param_slices[l]
    n_weight = p.net.weights[l].size
    block = matrix[rows, rows]
    return block[:n_weight, :n_weight] if which == "weight" else block[n_weight:, n_weight:]


def onehot_or_regression(p):
    return p.targets != "soft"


def no_softplus(p):
    return "softplus" not in p.net.activations


def backpack_takes(p):
    return no_softplus(p)


def backpack_kflr_takes(p):
    return no_softplus(p) and onehot_or_regression(p)


LAPLACE_WORKING = [  # (backend, kind, structure) that run with the installed laplace-torch and its backends
    ("curvlinops", "ggn", "full"),
    ("curvlinops", "ggn", "diag"),
    ("curvlinops", "ggn", "kron"),
    ("curvlinops", "ef", "full"),
    ("curvlinops", "ef", "diag"),
    ("curvlinops", "hessian", "full"),
    ("backpack", "ggn", "full"),
    ("backpack", "ggn", "diag"),
    ("backpack", "ggn", "kron"),
    ("backpack", "ef", "full"),
    ("backpack", "ef", "diag"),
    ("asdl", "ggn", "diag"),
    ("asdl", "ggn", "kron"),
    ("asdl", "ef", "diag"),
    ("asdl", "hessian", "full"),
]
LAPLACE_EXPECTED = {
    ("ggn", "full"): lambda o, p: o.ggn(),
    ("ggn", "diag"): lambda o, p: o.ggn_diagonal(),
    ("ggn", "kron"): lambda o, p: block_diagonal_kron(o, p.net),
    ("ef", "full"): lambda o, p: o.empirical_fisher(),
    ("ef", "diag"): lambda o, p: np.diag(o.empirical_fisher()),
    ("hessian", "full"): lambda o, p: o.hessian(),
}


def laplace_takes(backend, kind, structure):
    """Soft targets only where laplace-torch passes them to torch's loss as given; BackPACK's second-order
    extensions (GGN diag and kron) have no Softplus rule."""
    second_order = backend == "backpack" and kind == "ggn" and structure != "full"

    def takes(p):
        soft_ok = (backend, kind, structure) in adapter("laplace").PROBABILITY_TARGETS or onehot_or_regression(p)
        return soft_ok and (not second_order or no_softplus(p))

    return takes


CHECKS = [
    # BackPACK
    Check(
        "backpack",
        "per_sample_gradients",
        lambda m, p: m.per_sample_gradients(p.net, p.X, p.Y),
        lambda o, p: o.per_sample_gradients(),
    ),
    Check(
        "backpack",
        "hessian_diagonal",
        lambda m, p: m.hessian_diagonal(p.net, p.X, p.Y),
        lambda o, p: o.hessian_diagonal(),
        backpack_takes,
    ),
    Check(
        "backpack",
        "ggn_diagonal",
        lambda m, p: m.ggn_diagonal(p.net, p.X, p.Y),
        lambda o, p: o.ggn_diagonal(),
        backpack_takes,
    ),
    Check("backpack", "ggn", lambda m, p: m.ggn(p.net, p.X, p.Y), lambda o, p: o.ggn(), backpack_takes),
    Check(
        "backpack",
        "ggn_block(0, L-1)",
        lambda m, p: m.ggn_block(p.net, p.X, p.Y, 0, p.last),
        lambda o, p: o.ggn_block(0, p.last),
        backpack_takes,
    ),
    Check("backpack", "ggnvp", lambda m, p: m.ggnvp(p.net, p.X, p.Y, p.v), lambda o, p: o.ggnvp(p.v)),
    Check("backpack", "hvp", lambda m, p: m.hvp(p.net, p.X, p.Y, p.v), lambda o, p: o.hvp(p.v)),
    Check(
        "backpack",
        "kflr_factors A_z (= A_l[:-1, :-1])",
        lambda m, p: m.kflr_factors(p.net, p.X, p.Y, 0)[0],
        lambda o, p: o.kfac_factors(0)[0][:-1, :-1],
        backpack_kflr_takes,
    ),
    Check(
        "backpack",
        "kflr_factors G_l",
        lambda m, p: m.kflr_factors(p.net, p.X, p.Y, 0)[1],
        lambda o, p: o.kfac_factors(0)[1],
        backpack_kflr_takes,
    ),
    Check(
        "backpack",
        "kflr_block(L-1)",
        lambda m, p: m.kflr_block(p.net, p.X, p.Y, p.last),
        lambda o, p: separate_kron(o, p.net, p.last),
        backpack_kflr_takes,
    ),
    Check(
        "backpack",
        "hessian_parameter_block(0, weight)",
        lambda m, p: m.hessian_parameter_block(p.net, p.X, p.Y, 0, "weight"),
        lambda o, p: _parameter_block(o, p, 0, "weight", o.hessian()),
        backpack_takes,
    ),
    Check(
        "backpack",
        "hessian_parameter_block(L-1, bias)",
        lambda m, p: m.hessian_parameter_block(p.net, p.X, p.Y, p.last, "bias"),
        lambda o, p: _parameter_block(o, p, p.last, "bias", o.hessian()),
        backpack_takes,
    ),
    Check(
        "backpack",
        "ggn_parameter_block(0, weight)",
        lambda m, p: m.ggn_parameter_block(p.net, p.X, p.Y, 0, "weight"),
        lambda o, p: _parameter_block(o, p, 0, "weight", o.ggn()),
        backpack_takes,
    ),
    # curvlinops
    Check("curvlinops", "hessian", lambda m, p: m.hessian(p.net, p.X, p.Y), lambda o, p: o.hessian()),
    Check("curvlinops", "hvp", lambda m, p: m.hvp(p.net, p.X, p.Y, p.v), lambda o, p: o.hvp(p.v)),
    Check(
        "curvlinops",
        "hessian_block(L-1, 0)",
        lambda m, p: m.hessian_block(p.net, p.X, p.Y, p.last, 0),
        lambda o, p: o.hessian_block(p.last, 0),
    ),
    Check(
        "curvlinops",
        "hessian_diagonal",
        lambda m, p: m.hessian_diagonal(p.net, p.X, p.Y),
        lambda o, p: o.hessian_diagonal(),
    ),
    Check("curvlinops", "ggn", lambda m, p: m.ggn(p.net, p.X, p.Y), lambda o, p: o.ggn()),
    Check("curvlinops", "ggnvp", lambda m, p: m.ggnvp(p.net, p.X, p.Y, p.v), lambda o, p: o.ggnvp(p.v)),
    Check(
        "curvlinops",
        "ggn_block(0, L-1)",
        lambda m, p: m.ggn_block(p.net, p.X, p.Y, 0, p.last),
        lambda o, p: o.ggn_block(0, p.last),
    ),
    Check("curvlinops", "ggn_diagonal", lambda m, p: m.ggn_diagonal(p.net, p.X, p.Y), lambda o, p: o.ggn_diagonal()),
    Check(
        "curvlinops",
        "empirical_fisher",
        lambda m, p: m.empirical_fisher(p.net, p.X, p.Y),
        lambda o, p: o.empirical_fisher(),
        onehot_or_regression,
    ),
    Check(
        "curvlinops", "output_jacobian", lambda m, p: m.output_jacobian(p.net, p.X), lambda o, p: o.output_jacobian()
    ),
    Check(
        "curvlinops",
        "kfac_factors(0) A",
        lambda m, p: m.kfac_factors(p.net, p.X, p.Y, 0)[0],
        lambda o, p: o.kfac_factors(0)[0],
    ),
    Check(
        "curvlinops",
        "kfac_factors(L-1) G",
        lambda m, p: m.kfac_factors(p.net, p.X, p.Y, p.last)[1],
        lambda o, p: o.kfac_factors(p.last)[1],
    ),
    Check("curvlinops", "kfac_block(0)", lambda m, p: m.kfac_block(p.net, p.X, p.Y, 0), lambda o, p: o.kfac_block(0)),
    Check(
        "curvlinops",
        "kfac_separate_block(L-1)",
        lambda m, p: m.kfac_separate_block(p.net, p.X, p.Y, p.last),
        lambda o, p: separate_kron(o, p.net, p.last),
    ),
    Check(
        "curvlinops",
        "top_eigenvalues(3)",
        lambda m, p: m.top_eigenvalues(p.net, p.X, p.Y, 3),
        lambda o, p: o.top_eigenvalues(3),
    ),
    # nngeometry
    Check("nngeometry", "ggn", lambda m, p: m.ggn(p.net, p.X, p.Y), lambda o, p: o.ggn()),
    Check("nngeometry", "ggn_diagonal", lambda m, p: m.ggn_diagonal(p.net, p.X, p.Y), lambda o, p: o.ggn_diagonal()),
    Check(
        "nngeometry",
        "ggn_block(L-1, L-1)",
        lambda m, p: m.ggn_block(p.net, p.X, p.Y, p.last, p.last),
        lambda o, p: o.ggn_block(p.last, p.last),
    ),
    Check(
        "nngeometry",
        "ggn_block(0, L-1)",
        lambda m, p: m.ggn_block(p.net, p.X, p.Y, 0, p.last),
        lambda o, p: o.ggn_block(0, p.last),
    ),
    Check(
        "nngeometry",
        "kfac_factors(0) A",
        lambda m, p: m.kfac_factors(p.net, p.X, p.Y, 0)[0],
        lambda o, p: o.kfac_factors(0)[0],
    ),
    Check(
        "nngeometry",
        "kfac_factors(0) G",
        lambda m, p: m.kfac_factors(p.net, p.X, p.Y, 0)[1],
        lambda o, p: o.kfac_factors(0)[1],
    ),
    Check(
        "nngeometry",
        "kfac_block(L-1)",
        lambda m, p: m.kfac_block(p.net, p.X, p.Y, p.last),
        lambda o, p: o.kfac_block(p.last),
    ),
    Check("nngeometry", "hessian", lambda m, p: m.hessian(p.net, p.X, p.Y), lambda o, p: o.hessian()),
    Check(
        "nngeometry", "output_jacobian", lambda m, p: m.output_jacobian(p.net, p.X), lambda o, p: o.output_jacobian()
    ),
    # laplace-torch: the contract names (its default backend), then every working backend x kind x structure
    Check("laplace", "ggn", lambda m, p: m.ggn(p.net, p.X, p.Y), lambda o, p: o.ggn()),
    Check("laplace", "ggn_diagonal", lambda m, p: m.ggn_diagonal(p.net, p.X, p.Y), lambda o, p: o.ggn_diagonal()),
    Check("laplace", "hessian", lambda m, p: m.hessian(p.net, p.X, p.Y), lambda o, p: o.hessian()),
    Check(
        "laplace",
        "empirical_fisher",
        lambda m, p: m.empirical_fisher(p.net, p.X, p.Y),
        lambda o, p: o.empirical_fisher(),
        onehot_or_regression,
    ),
    Check(
        "laplace",
        "per_sample_gradients",
        lambda m, p: m.per_sample_gradients(p.net, p.X, p.Y),
        lambda o, p: o.per_sample_gradients(),
    ),
    Check("laplace", "output_jacobian", lambda m, p: m.output_jacobian(p.net, p.X), lambda o, p: o.output_jacobian()),
    *[
        Check(
            "laplace",
            f"curvature({b}, {k}, {s})",
            lambda m, p, b=b, k=k, s=s: m.curvature(p.net, p.X, p.Y, b, k, s),
            lambda o, p, k=k, s=s: LAPLACE_EXPECTED[(k, s)](o, p),
            laplace_takes(b, k, s),
        )
        for b, k, s in LAPLACE_WORKING
    ],
    # hessian-eigenthings
    Check("eigenthings", "hvp", lambda m, p: m.hvp(p.net, p.X, p.Y, p.v), lambda o, p: o.hvp(p.v)),
    Check("eigenthings", "hessian", lambda m, p: m.hessian(p.net, p.X, p.Y), lambda o, p: o.hessian()),
    Check("eigenthings", "ggnvp", lambda m, p: m.ggnvp(p.net, p.X, p.Y, p.v), lambda o, p: o.ggnvp(p.v)),
    Check("eigenthings", "ggn", lambda m, p: m.ggn(p.net, p.X, p.Y), lambda o, p: o.ggn()),
    Check(
        "eigenthings",
        "empirical_fisher",
        lambda m, p: m.empirical_fisher(p.net, p.X, p.Y),
        lambda o, p: o.empirical_fisher(),
    ),
    Check(
        "eigenthings",
        "top_eigenvalues(3)",
        lambda m, p: m.top_eigenvalues(p.net, p.X, p.Y, 3),
        lambda o, p: o.top_eigenvalues(3),
    ),
    # PyHessian
    Check("pyhessian", "hvp", lambda m, p: m.hvp(p.net, p.X, p.Y, p.v), lambda o, p: o.hvp(p.v)),
    # opacus
    *[
        Check(
            "opacus",
            name,
            lambda m, p, name=name: getattr(m, name)(p.net, p.X, p.Y),
            lambda o, p: o.per_sample_gradients(),
        )
        for name in ("per_sample_gradients", "per_sample_gradients_functorch", "per_sample_gradients_expanded_weights")
    ],
]


def check_id(check):
    return f"{check.library}-{check.label}".replace(" ", "")


def compare(check, p, value, expected):
    """Assert ``value`` equals ``expected`` to TOLERANCE; the failure names library, quantity, case and worst entry."""
    value, expected = np.asarray(value, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    where = f"{check.library} {check.label} on {p.name}"
    assert value.dtype == np.float64, f"{where}: returned {value.dtype}, not float64"
    assert value.shape == expected.shape, f"{where}: shape {value.shape}, expected {expected.shape}"
    error = relative_error(value, expected)
    if not error <= TOLERANCE:
        worst = np.unravel_index(np.argmax(np.abs(value - expected)), value.shape) if value.ndim else ()
        raise AssertionError(
            f"{where}: relative error {error:.3g} > {TOLERANCE:g}; worst at {tuple(map(int, worst))}: "
            f"{value[worst]!r} != {expected[worst]!r}"
        )
    return error


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case_id(c) for c in CASES])
@pytest.mark.parametrize("check", CHECKS, ids=[check_id(c) for c in CHECKS])
def test_adapter_matches_definition(check, index):
    module = adapter(check.library)
    p = problem(index)
    if check.takes is not None and not check.takes(p):
        with pytest.raises(ArgumentError):  # refused by name, never returned wrong
            check.call(module, p)
        return
    compare(check, p, check.call(module, p), check.expected(p.oracle, p))


# ---- identities the libraries must satisfy at N = 1 --------------------------------------------------------------
N1 = [i for i, c in enumerate(CASES) if c["n"] == 1]


@pytest.mark.parametrize("index", N1, ids=[case_id(CASES[i]) for i in N1])
@pytest.mark.parametrize("library", ["curvlinops", "nngeometry"])
def test_kfac_block_is_the_ggn_block_at_one_sample(library, index):
    """At N = 1, ``kron(G_l, A_l)`` over ``[z; 1]`` is exactly the GGN's layer block."""
    module, p = adapter(library), problem(index)
    for l in range(p.net.n_layers):
        check = Check(library, f"kfac_block({l}) vs ggn_block({l}, {l})", None, None)
        compare(check, p, module.kfac_block(p.net, p.X, p.Y, l), p.oracle.ggn_block(l, l))


# ---- refusals ---------------------------------------------------------------------------------------------------
def test_backpack_refuses_softplus_with_its_own_message():
    module = adapter("backpack")
    p = problem(len(CASES) - 1)
    from peers._common import UnsupportedError

    with pytest.raises(UnsupportedError, match="BackPACK cannot compute DiagGGNExact.*Softplus"):
        module.ggn_diagonal(p.net, p.X, p.Y)


@pytest.mark.parametrize(
    "library, call",
    [
        ("backpack", lambda m, p: m.kflr_factors(p.net, p.X, p.Y, 0)),
        ("curvlinops", lambda m, p: m.empirical_fisher(p.net, p.X, p.Y)),
        ("laplace", lambda m, p: m.empirical_fisher(p.net, p.X, p.Y)),
    ],
    ids=["backpack-kflr", "curvlinops-empirical_fisher", "laplace-empirical_fisher"],
)
def test_class_index_libraries_refuse_soft_targets(library, call):
    module = adapter(library)
    p = problem(5)
    assert p.targets == "soft"
    with pytest.raises(ArgumentError, match="class indices only.*not one-hot"):
        call(module, p)


@pytest.mark.parametrize("library", ["curvlinops", "eigenthings"])
def test_top_eigenvalues_refuses_k_out_of_range(library):
    module, p = adapter(library), problem(1)
    for k in (0, p.net.n_params + 1, 2.0, True):
        with pytest.raises(ArgumentError, match="k is"):
            module.top_eigenvalues(p.net, p.X, p.Y, k)


def test_layer_index_out_of_range_is_refused():
    from xval.errors import LayerIndexError

    module, p = adapter("curvlinops"), problem(1)
    with pytest.raises(LayerIndexError):
        module.kfac_factors(p.net, p.X, p.Y, p.net.n_layers)


def test_eigenthings_refuses_a_short_lanczos_answer():
    """At N = 1 the mse Hessian has few distinct eigenvalues: lanczos returns fewer than k of them."""
    module, p = adapter("eigenthings"), problem(0)
    with pytest.raises(module.NotConvergedError, match="returned .* eigenvalues for k ="):
        module.top_eigenvalues(p.net, p.X, p.Y, p.net.n_params)


# ---- float32: the adapters follow the network's dtype --------------------------------------------------------------
@pytest.mark.parametrize(
    "library, call, expected",
    [
        ("backpack", lambda m, n, X, Y: m.ggn_diagonal(n, X, Y), lambda o: o.ggn_diagonal()),
        ("curvlinops", lambda m, n, X, Y: m.kfac_block(n, X, Y, 0), lambda o: o.kfac_block(0)),
        ("nngeometry", lambda m, n, X, Y: m.ggn(n, X, Y), lambda o: o.ggn()),
        ("opacus", lambda m, n, X, Y: m.per_sample_gradients(n, X, Y), lambda o: o.per_sample_gradients()),
    ],
    ids=["backpack", "curvlinops", "nngeometry", "opacus"],
)
def test_float32_networks_compute_in_float32(library, call, expected):
    """A float32 network runs in float32: within float32 rounding of the float64 definition, but not float64's."""
    module, p = adapter(library), problem(3)
    value = call(module, p.net.astype("float32"), p.X, p.Y)
    error = relative_error(value, expected(p.oracle))
    assert 1e-12 < error < 2e-4, f"{library}: float32 network gave relative error {error:.3g}"


# ---- mutation audit: a planted classic bug in any adapter's output fails, naming the quantity ---------------------
MUTATIONS = {
    "factor 2": lambda value, p: 2 * value,
    "batch size": lambda value, p: value / p.X.shape[0],  # a mean taken twice (or a sum where a mean belongs)
    "transpose": lambda value, p: value.T,
    "sample order": lambda value, p: value[::-1],
}
AUDIT = [  # (library, check label, mutations that must be caught); every adapter appears
    ("backpack", "per_sample_gradients", ["factor 2", "sample order"]),
    ("backpack", "ggn_diagonal", ["factor 2", "batch size"]),
    ("backpack", "kflr_factors G_l", ["factor 2", "batch size"]),
    ("curvlinops", "ggn_block(0, L-1)", ["factor 2", "batch size", "transpose"]),
    ("curvlinops", "empirical_fisher", ["factor 2", "batch size"]),
    ("curvlinops", "hessian_block(L-1, 0)", ["factor 2"]),
    ("curvlinops", "kfac_block(0)", ["factor 2", "batch size"]),
    ("nngeometry", "kfac_factors(0) G", ["factor 2", "batch size"]),
    ("nngeometry", "ggn", ["factor 2", "batch size"]),
    ("laplace", "empirical_fisher", ["factor 2", "batch size"]),
    ("laplace", "output_jacobian", ["factor 2"]),
    ("eigenthings", "top_eigenvalues(3)", ["factor 2", "batch size"]),
    ("eigenthings", "ggnvp", ["factor 2"]),
    ("opacus", "per_sample_gradients", ["factor 2", "sample order"]),
    ("pyhessian", "hvp", ["factor 2", "batch size"]),
]
AUDITED = [(library, label, mutation) for library, label, mutations in AUDIT for mutation in mutations]


@pytest.mark.parametrize(
    "library, label, mutation",
    AUDITED,
    ids=[f"{library}-{label}-{mutation}".replace(" ", "") for library, label, mutation in AUDITED],
)
def test_planted_bug_fails_naming_the_quantity(library, label, mutation):
    check = next(c for c in CHECKS if c.library == library and c.label == label)
    module, p = adapter(library), problem(3)  # sigmoid cross_entropy, N = 5: no symmetry hides a mutation
    value = check.call(module, p)
    expected = check.expected(p.oracle, p)
    compare(check, p, value, expected)  # the unmutated value passes
    with pytest.raises(AssertionError, match=f"{library} {re.escape(label)} on {p.name}"):
        compare(check, p, MUTATIONS[mutation](np.asarray(value), p), expected)


def test_swapped_kronecker_factors_fail():
    """``kron(A_l, G_l)`` in place of ``kron(G_l, A_l)`` (the factor order the libraries document differently)."""
    module, p = adapter("curvlinops"), problem(3)
    A, G = module.kfac_factors(p.net, p.X, p.Y, 0)
    check = Check("curvlinops", "kfac_block(0)", None, None)
    with pytest.raises(AssertionError, match="curvlinops kfac_block\\(0\\)"):
        compare(check, p, np.kron(A, G), p.oracle.kfac_block(0))


# ---- stochastic estimators: reproducible per seed, unbiased within their own standard error --------------------------
SEEDS = estimators.SEEDS
STOCHASTIC = [  # (library, label, estimate(module, p, seed) -> array, exact(oracle, p) -> array)
    (
        "backpack",
        "mc_ggn_diagonal",
        lambda m, p, s: m.mc_ggn_diagonal(p.net, p.X, p.Y, s, 64),
        lambda o, p: o.ggn_diagonal(),
    ),
    ("backpack", "mc_ggn", lambda m, p, s: m.mc_ggn(p.net, p.X, p.Y, s, 64), lambda o, p: o.ggn()),
    (
        "backpack",
        "mc_kflr_factors G",
        lambda m, p, s: m.mc_kflr_factors(p.net, p.X, p.Y, 0, s, 64)[1],
        lambda o, p: o.kfac_factors(0)[1],
    ),
    ("curvlinops", "mc_ggn", lambda m, p, s: m.mc_ggn(p.net, p.X, p.Y, s, 64), lambda o, p: o.ggn()),
    (
        "curvlinops",
        "mc_kfac_factors G",
        lambda m, p, s: m.mc_kfac_factors(p.net, p.X, p.Y, 0, s, 64)[1],
        lambda o, p: o.kfac_factors(0)[1],
    ),
    (
        "curvlinops",
        "hutchinson_hessian_trace",
        lambda m, p, s: m.hutchinson_hessian_trace(p.net, p.X, p.Y, s, 32),
        lambda o, p: o.hessian_trace(),
    ),
    (
        "curvlinops",
        "hutchpp_hessian_trace",
        lambda m, p, s: m.hutchpp_hessian_trace(p.net, p.X, p.Y, s, 24),
        lambda o, p: o.hessian_trace(),
    ),
    (
        "curvlinops",
        "xtrace_hessian_trace",
        lambda m, p, s: m.xtrace_hessian_trace(p.net, p.X, p.Y, s, 24),
        lambda o, p: o.hessian_trace(),
    ),
    (
        "curvlinops",
        "hutchinson_hessian_diagonal",
        lambda m, p, s: m.hutchinson_hessian_diagonal(p.net, p.X, p.Y, s, 32),
        lambda o, p: o.hessian_diagonal(),
    ),
    (
        "curvlinops",
        "xdiag_hessian_diagonal",
        lambda m, p, s: m.xdiag_hessian_diagonal(p.net, p.X, p.Y, s, 24),
        lambda o, p: o.hessian_diagonal(),
    ),
    ("nngeometry", "mc_ggn", lambda m, p, s: m.mc_ggn(p.net, p.X, p.Y, s, 64), lambda o, p: o.ggn()),
    (
        "eigenthings",
        "hutchinson_hessian_trace",
        lambda m, p, s: m.hutchinson_hessian_trace(p.net, p.X, p.Y, s, 32),
        lambda o, p: o.hessian_trace(),
    ),
    (
        "eigenthings",
        "hutchpp_hessian_trace",
        lambda m, p, s: m.hutchpp_hessian_trace(p.net, p.X, p.Y, s, 24),
        lambda o, p: o.hessian_trace(),
    ),
]


@pytest.mark.parametrize(
    "library, label, estimate, exact",
    STOCHASTIC,
    ids=[f"{library}-{label}".replace(" ", "") for library, label, _, _ in STOCHASTIC],
)
def test_stochastic_estimator_is_unbiased(library, label, estimate, exact):
    """One fixed random linear functional of the estimate (unbiased if the estimator is) has its mean over SEEDS
    seeds within five standard errors of the exact value's (a factor 2, a missing 1/N or a wrong Lambda is far
    outside); the same seed gives the same value. One statistic per estimator, so five standard errors is a real
    bound, not one of thousands of entries."""
    module, p = adapter(library), problem(3)  # sigmoid cross_entropy, N = 5
    values = [np.asarray(estimate(module, p, seed), dtype=np.float64) for seed in range(SEEDS)]
    np.testing.assert_array_equal(
        values[0],
        np.asarray(estimate(module, p, 0)),
        err_msg=f"{library} {label}: seed 0 gave a different value the second time",
    )
    relative_standard_error = assert_unbiased(f"{library} {label}", values, exact(p.oracle, p))
    # five standard errors must stay below the difference a factor 2 makes, or the check could not fail
    assert relative_standard_error < 0.1, (
        f"{library} {label}: too noisy ({relative_standard_error:.2g}) to see a factor 2"
    )


def assert_unbiased(what, values, exact):
    """``xval.estimators.judge`` (the statistic ``python -m xval conformance`` uses) finds no bias; returns the
    relative standard error."""
    statistic = estimators.judge(values, exact)
    assert statistic.status != "fail", f"{what}: {statistic.text()}"
    return statistic.relative_standard_error


def test_a_biased_estimator_fails_the_statistical_check():
    """The bound catches the classic bugs: BackPACK's MC GGN diagonal with a planted factor 2, or summed instead of
    averaged over the batch."""
    module, p = adapter("backpack"), problem(3)
    values = [module.mc_ggn_diagonal(p.net, p.X, p.Y, seed, 64) for seed in range(SEEDS)]
    assert_unbiased("backpack mc_ggn_diagonal", values, p.oracle.ggn_diagonal())
    for planted in (2.0, p.X.shape[0]):
        with pytest.raises(AssertionError, match="backpack mc_ggn_diagonal: mean"):
            assert_unbiased("backpack mc_ggn_diagonal", [planted * v for v in values], p.oracle.ggn_diagonal())


@pytest.mark.parametrize("library", ["pyhessian", "eigenthings"])
def test_power_iteration_finds_the_eigenvalues_of_largest_magnitude(library):
    """Power iteration (PyHessian's ``eigenvalues``, hessian-eigenthings' ``deflated_power_iteration``) returns the
    eigenvalues of largest magnitude, not the largest algebraic ones; within 1e-4 relative (their stopping rules
    compare successive iterates, so they bound no error; 1000 iterations reach about 1e-6 here)."""
    module, p = adapter(library), problem(6)  # softplus cross_entropy: top three by magnitude 1.30, 0.91, -0.89
    eigenvalues = np.linalg.eigvalsh(p.oracle.hessian())
    by_magnitude = eigenvalues[np.argsort(-np.abs(eigenvalues))][:3]
    assert by_magnitude.min() < 0 < by_magnitude.max(), "this case must have a negative eigenvalue in its top three"
    found = module.power_top_eigenvalues(p.net, p.X, p.Y, 3, 0)
    assert relative_error(np.sort(found), np.sort(by_magnitude)) < 1e-4
