"""laplace-torch's curvature backends as an engine.

laplace-torch computes the curvature of the batch's *summed* negative log-likelihood: each backend hands torch's
sum-reduced loss to BackPACK, curvlinops, ASDL or torch.func and multiplies the result by ``factor`` (1/2 for
``MSELoss``, whose log-likelihood is the suite's ``0.5 ||f - y||^2``; 1 for cross-entropy). So its GGN, Hessian and
diagonals are ``N`` times the contract's (which averages over the batch). Its empirical Fisher multiplies the summed
outer products of torch's per-sample gradients by the same ``factor``; being quadratic in the gradients, that is
``factor * TERM_SCALE^2`` (2 for mse, 1 for cross_entropy) times the suite's ``sum_n g_n g_n^T``.

Each contract function, what computes it in laplace-torch (its default backend, ``CurvlinopsGGN``, as ``Laplace``
uses), and the mapping.

- ``ggn``: ``CurvlinopsGGN.full``, divided by N; ``ggn_diagonal``: ``CurvlinopsGGN.diag``, divided by N.
- ``hessian``: ``CurvlinopsHessian.full``, divided by N.
- ``empirical_fisher``: ``CurvlinopsEF.full``, divided by N factor TERM_SCALE^2.
- ``per_sample_gradients``: ``CurvlinopsGGN.gradients`` (torch.func over torch's loss), divided by TERM_SCALE.
- ``output_jacobian``: ``CurvlinopsGGN.jacobians``, ``(N, n_L, P)`` as it is.

Every backend and structure: ``curvature(net, X, Y, backend, kind, structure)`` with ``backend`` in ``BACKENDS``,
``kind`` ``"ggn"``, ``"ef"`` or ``"hessian"`` and ``structure`` ``"full"``, ``"diag"`` or ``"kron"``, mapped the same
way. ``"kron"`` is laplace-torch's ``Kron.to_matrix()``: per parameter, weight ``kron(G, A_z)`` and bias ``G`` (no
homogeneous coordinate, no weight-bias terms), not the contract's ``kfac_block``.
"""

import numpy as np

from . import _common
from ._common import numpy

_common.require("laplace", "laplace-torch")
from laplace import curvature as _curvature  # noqa: E402

LIBRARY = "laplace-torch"
CONVENTIONS = {
    "kfac_block": "its Kron structure is per parameter: weight kron(G, A_z) and bias G, without the homogeneous "
    "coordinate or the weight-bias terms of the contract's kron(G_l, A_l) (curvature(..., 'kron'))",
}
LIKELIHOOD = {"mse": "regression", "cross_entropy": "classification"}
# The interface classes of each backend, by kind of curvature.
BACKENDS = {
    "curvlinops": {"ggn": "CurvlinopsGGN", "ef": "CurvlinopsEF", "hessian": "CurvlinopsHessian"},
    "backpack": {"ggn": "BackPackGGN", "ef": "BackPackEF"},
    "asdl": {"ggn": "AsdlGGN", "ef": "AsdlEF", "hessian": "AsdlHessian"},
}
STRUCTURES = ("full", "diag", "kron")
# The paths that take cross-entropy targets as probability rows (torch's loss on them as given); the others flatten
# the labels as class indices (``y.view(-1)`` or curvlinops' EF), so they get classes, and refuse soft targets.
PROBABILITY_TARGETS = {
    ("curvlinops", "ggn", "full"),
    ("curvlinops", "ggn", "diag"),
    ("curvlinops", "ef", "diag"),
    ("curvlinops", "hessian", "full"),
    ("backpack", "ggn", "full"),
    ("backpack", "ef", "full"),
    ("curvlinops", "ggn", "gradients"),
}


def _interface(net, X, Y, backend, kind, structure):
    if backend not in BACKENDS:
        raise _common.ArgumentError(f"backend is {backend!r}; laplace-torch's backends are: {', '.join(BACKENDS)}")
    if kind not in BACKENDS[backend]:
        raise _common.ArgumentError(
            f"laplace-torch's {backend} backend has no {kind!r} interface; it has: {', '.join(BACKENDS[backend])}"
        )
    targets = "probabilities" if (backend, kind, structure) in PROBABILITY_TARGETS else "classes"
    problem = _common.setup(net, X, Y, targets=targets, library=f"{LIBRARY}'s {backend} {kind} {structure}")
    # laplace-torch's Laplace classes set model.output_size before building a backend; the BackPACK and ASDL
    # Jacobians read it
    problem.model.output_size = net.sizes[-1]
    interface = getattr(_curvature, BACKENDS[backend][kind])(problem.model, LIKELIHOOD[net.loss])
    return problem, interface


def _scale(problem, interface, kind):
    """laplace-torch's summed log-likelihood curvature -> the contract's batch mean."""
    if kind == "ef":
        # factor * sum_n (TERM_SCALE g_n)(TERM_SCALE g_n)^T
        return 1.0 / (problem.n * interface.factor * problem.term_scale**2)
    # factor * TERM_SCALE = 1: the summed log-likelihood's curvature, N times the mean's
    return 1.0 / problem.n


def curvature(net, X, Y, backend, kind, structure):
    """laplace-torch's ``structure`` (``full`` ``(P, P)``, ``diag`` ``(P,)``, ``kron`` ``(P, P)`` block-diagonal) of
    ``kind`` from ``backend``, mapped onto the contract's batch mean."""
    if structure not in STRUCTURES:
        raise _common.ArgumentError(f"structure is {structure!r}; it must be one of: {', '.join(STRUCTURES)}")
    problem, interface = _interface(net, X, Y, backend, kind, structure)
    with _common.default_dtype(net), _common.refusals(LIBRARY, f"{backend} {kind} {structure}"):
        if structure == "kron":
            _, value = interface.kron(problem.X, problem.Y, N=problem.n)
            value = value.to_matrix()
        else:
            _, value = getattr(interface, structure)(problem.X, problem.Y)
    return numpy(value) * _scale(problem, interface, kind)


def ggn(net, X, Y):
    """``(P, P)``, ``G``, from ``CurvlinopsGGN.full``."""
    return curvature(net, X, Y, "curvlinops", "ggn", "full")


def ggn_diagonal(net, X, Y):
    """``(P,)``, ``diag G``, from ``CurvlinopsGGN.diag``."""
    return curvature(net, X, Y, "curvlinops", "ggn", "diag")


def hessian(net, X, Y):
    """``(P, P)`` from ``CurvlinopsHessian.full``."""
    return curvature(net, X, Y, "curvlinops", "hessian", "full")


def empirical_fisher(net, X, Y):
    """``(P, P)``, ``(1/N) sum_n g_n g_n^T``, from ``CurvlinopsEF.full``."""
    return curvature(net, X, Y, "curvlinops", "ef", "full")


def per_sample_gradients(net, X, Y):
    """``(N, P)`` from ``CurvlinopsGGN.gradients`` (gradients of torch's summed loss terms)."""
    problem, interface = _interface(net, X, Y, "curvlinops", "ggn", "gradients")
    gradients, _ = interface.gradients(problem.X, problem.Y)
    # row n is the gradient of TERM_SCALE * loss_n (laplace-torch does not apply its factor here)
    return numpy(gradients).reshape(problem.n, -1) / problem.term_scale


def output_jacobian(net, X):
    """``(N, n_L, P)`` from ``CurvlinopsGGN.jacobians``."""
    X = _common.inputs(net, X, LIBRARY)
    interface = _curvature.CurvlinopsGGN(net.to_torch(), LIKELIHOOD[net.loss])
    jacobians, _ = interface.jacobians(X)
    return np.asarray(numpy(jacobians))
