"""The largest Hessian eigenvalues: ``jnp.linalg.eigvalsh`` of the dense Hessian (``stage_hessian``'s) up to
``DENSE_LIMIT`` parameters, beyond that ARPACK's Lanczos (``scipy.sparse.linalg.eigsh``) on jitted Hessian-vector
products, stopped at a relative accuracy below the comparison tolerance and checked by the residuals
``||H x - lambda x||``."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from xval import compare
from xval.checks import check_count
from xval.errors import ArgumentError

from . import _model as model
from ._second_order import _hessian

DENSE_LIMIT = 2000  # P up to this: the (P, P) Hessian (32 MB) and a dense eigendecomposition
SOLVER_MARGIN = 100  # ARPACK's tolerance is the comparison tolerance / SOLVER_MARGIN


def _objective_of_vector(arch):
    objective = model.make_objective(arch)
    return lambda theta, X, Y: objective(model.groups(arch, theta), X, Y)


def _hvp(arch):
    gradient = jax.grad(_objective_of_vector(arch))
    return lambda theta, X, Y, v: jax.jvp(lambda point: gradient(point, X, Y), (theta,), (v,))[1]


def stage_top_eigenvalues(net, X, Y, k):
    """``top_eigenvalues`` staged: ``(k,)``, the ``k`` largest eigenvalues of the Hessian of ``E``, descending."""
    k = check_count(net, k)
    X, Y = model.data(net, X, Y, "top_eigenvalues", k=k)
    theta = model.array(net.to_vector(), net.dtype)
    if net.n_params <= DENSE_LIMIT:  # the Hessian's own jitted function (compiled once for both quantities)
        hessian = model.staged(_hessian, net, theta, X, Y)
        return lambda: jax.block_until_ready(jnp.linalg.eigvalsh(hessian())[::-1][:k])
    product = model.jitted(model.architecture(net), _hvp)

    def matvec(v):
        return model.to_numpy(product(theta, X, Y, model.array(np.reshape(v, -1), net.dtype)))

    return lambda: model.array(lanczos(matvec, net.n_params, k, net.dtype.name), net.dtype)


def lanczos(matvec, size, k, dtype):
    """The ``k`` largest eigenvalues (descending) of the symmetric ``size x size`` operator ``matvec``, by ARPACK,
    each with a residual ``||M x - lambda x||`` within the comparison tolerance of the largest magnitude."""
    rtol = compare.TOLERANCES[dtype]
    if k >= size:
        raise ArgumentError(
            f"top_eigenvalues: k = {k}, but for P = {size} > {DENSE_LIMIT} parameters the eigenvalues "
            f"come from ARPACK's Lanczos iteration, which finds k in 1..{size - 1}; ask for fewer"
        )
    operator = LinearOperator((size, size), matvec=matvec, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(size)
    try:
        values, vectors = eigsh(operator, k=k, which="LA", tol=rtol / SOLVER_MARGIN, v0=start)
    except ArpackNoConvergence as exc:
        raise ArgumentError(
            f"top_eigenvalues: ARPACK did not converge for k = {k} on P = {size} parameters (only "
            f"{len(exc.eigenvalues)} eigenvalues converged to {rtol / SOLVER_MARGIN:.0e}); ask for "
            f"fewer eigenvalues (k in 1..{max(len(exc.eigenvalues), 1)})"
        ) from None
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    scale = max(float(np.max(np.abs(values))), np.finfo(np.float64).tiny)
    residuals = [np.linalg.norm(matvec(vectors[:, i]) - values[i] * vectors[:, i]) for i in range(k)]
    if max(residuals) > rtol * scale:
        raise ArgumentError(
            f"top_eigenvalues: ARPACK's k = {k} eigenvalues are not accurate to {rtol:.0e} relative "
            f"(largest residual {max(residuals):.2e} of {scale:.2e}); ask for fewer eigenvalues"
        )
    return values
