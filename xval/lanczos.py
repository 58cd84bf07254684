"""The references' Lanczos driver: the largest eigenvalues of a symmetric operator given as a numpy matrix-vector
product, by ARPACK (``scipy.sparse.linalg.eigsh``), stopped at a relative accuracy below the comparison tolerance and
checked by the residuals ``||M x - lambda x||``; refused, with what to ask for instead, when it cannot be trusted."""

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from . import compare
from .errors import ArgumentError

SOLVER_MARGIN = 100  # ARPACK's tolerance is the comparison tolerance / SOLVER_MARGIN


def lanczos(matvec, size, k, dtype, dense_limit):
    """The ``k`` largest eigenvalues (descending) of the symmetric ``size x size`` operator ``matvec``, by ARPACK,
    each with a residual ``||M x - lambda x||`` within the comparison tolerance of the largest magnitude."""
    rtol = compare.TOLERANCES[dtype]
    if k >= size:
        raise ArgumentError(
            f"top_eigenvalues: k = {k}, but for P = {size} > {dense_limit} parameters the eigenvalues "
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
