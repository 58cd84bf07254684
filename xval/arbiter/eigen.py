"""The ``k`` largest eigenvalues of a symmetric high-precision matrix in ``O(P^2 k)`` high-precision operations per
step, instead of ``mpmath.eigsy``'s ``O(P^3)`` (a minute at P = 100 in pure Python):

1. float64 ``eigh`` of the rounded matrix gives every eigenvalue to ``tol = (1 + 4 P) u ||H||_F`` and a basis of the
   top ``m >= k`` eigenvectors, ``m`` grown until a gap of more than ``4 tol`` separates them from the rest;
2. Rayleigh-Ritz in high precision on that basis: Ritz values ``theta`` and the residual ``R = H X - X Theta``;
   by the Kato-Temple bound for a subspace, each ``theta_i`` is within ``||R||_F^2 / delta`` of the i-th largest
   eigenvalue, ``delta`` the gap between the Ritz values and the rest of the spectrum (from step 1);
3. while that bound is not far below float64's resolution (``2^-64 |theta_i|``, or the working precision's floor for
   a value that cancels to nearly 0), a Davidson step: the basis grows by the residuals' corrections solved with
   the float64 eigendecomposition, and Rayleigh-Ritz again.

When no gap separates the top ``k`` from the rest (a cluster reaching the bottom of the spectrum) it falls back to
``mpmath.eigsy`` on the whole matrix.
"""

import mpmath
import numpy as np

STEPS = 6


class NotConverged(ArithmeticError):
    """The Ritz values' bound stayed above float64's resolution after ``STEPS`` Davidson steps."""


def _mp(array):
    out = np.empty(np.shape(array), dtype=object)
    for index in np.ndindex(out.shape):
        out[index] = mpmath.mpf(float(array[index]))
    return out


def _orthonormal(columns):
    """An orthonormal basis (object array ``(P, r)``) of the columns, by modified Gram-Schmidt done twice; columns
    that fall within ``10^-(digits/2)`` of the others' span are dropped."""
    basis = []
    floor = mpmath.mpf(10) ** (-mpmath.mp.dps // 2)
    for j in range(columns.shape[1]):
        column = columns[:, j].copy()
        size = mpmath.sqrt(np.dot(column, column))
        for _ in range(2):
            for q in basis:
                column = column - q * np.dot(q, column)
        norm = mpmath.sqrt(np.dot(column, column))
        if norm > floor * size:
            basis.append(column / norm)
    return np.array(basis, dtype=object).T


def _ritz(H, basis):
    """Rayleigh-Ritz on ``basis``: ``(theta (descending), X, R)``, ``X`` the Ritz vectors, ``R = H X - X Theta``."""
    image = H @ basis
    T = basis.T @ image
    T = (T + T.T) / 2
    values, vectors = mpmath.eigsy(mpmath.matrix(T.tolist()))
    order = sorted(range(values.rows), key=lambda i: values[i], reverse=True)
    theta = np.array([values[i] for i in order], dtype=object)
    S = np.array([[vectors[r, i] for i in order] for r in range(vectors.rows)], dtype=object)
    X, HX = basis @ S, image @ S
    return theta, X, HX - X * theta


def top_eigenvalues(H, k):
    """The ``k`` largest eigenvalues of the symmetric object array ``H`` ``(P, P)`` of ``mpf``, descending."""
    p = H.shape[0]
    A = np.vectorize(float, otypes=[np.float64])(H)
    w, V = np.linalg.eigh((A + A.T) / 2)
    w, V = w[::-1], V[:, ::-1]
    tol = (1 + 4 * p) * 2.0**-53 * np.linalg.norm(A)
    m = k
    while m < p and w[m - 1] - w[m] <= 4 * tol:
        m += 1
    if m == p:
        values = mpmath.eigsy(mpmath.matrix(H.tolist()), eigvals_only=True)
        return sorted((values[i] for i in range(values.rows)), reverse=True)[:k]
    rest_top = w[m] + tol
    norm = mpmath.sqrt(np.sum(H * H))
    floor = mpmath.mpf(10) ** (-(mpmath.mp.dps - 10)) * norm
    basis = _orthonormal(_mp(V[:, :m]))
    for _ in range(STEPS):
        theta, X, R = _ritz(H, basis)
        theta, X, R = theta[:m], X[:, :m], R[:, :m]
        gap = theta[-1] - rest_top
        if gap > 0:
            bound = np.sum(R * R) / gap
            if all(bound <= max(abs(t) * mpmath.mpf(2) ** -64, floor) for t in theta[:k]):
                return list(theta[:k])
        # Davidson: corrections off the basis, (w_j - theta_i)^-1 on the float64 eigenvectors of the rest
        residuals = np.vectorize(float, otypes=[np.float64])(R)
        shifts = np.array([float(t) for t in theta])
        rest = V[:, m:]
        corrections = rest @ ((rest.T @ residuals) / (w[m:, None] - shifts[None, :]))
        basis = _orthonormal(np.concatenate([X, _mp(corrections)], axis=1))
    raise NotConverged(f"the Ritz values' error bound is still above float64's resolution after {STEPS} steps")
