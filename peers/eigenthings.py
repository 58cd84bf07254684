"""hessian-eigenthings as an engine: its curvature operators and iterative spectral algorithms.

Each contract function, what computes it in hessian-eigenthings, and the mapping (TERM_SCALE: torch's summed loss
term over loss_n).

- ``hvp``, ``hessian``: ``HessianOperator`` (autograd double backward; ``hessian`` applies it to the identity); the
  summed loss, divided by TERM_SCALE N.
- ``ggnvp``, ``ggn``: ``GGNOperator``; as above.
- ``empirical_fisher``: ``EmpiricalFisherOperator``, already ``(1/N) sum_n g_n g_n^T`` of the per-sample loss it is
  given; torch's per-sample term is TERM_SCALE loss_n, so divided by TERM_SCALE^2.
- ``top_eigenvalues``: ``lanczos(HessianOperator, which="LA")`` with full reorthogonalization, as ``hvp``; refused
  when its own residual test says not converged.

The operators average over the data loader's *batches* (one batch here), so the loss handed to them is the whole
batch's sum. ``lanczos`` runs ``min(P, max(2k, LANCZOS_STEPS))`` steps: for the networks of the case table (P <= 256)
that is the whole Krylov space, so its Ritz values are the eigenvalues to rounding; its own convergence flags (residual
below ``tol |lambda|``) are checked, and a value that did not converge is refused rather than returned.

Stochastic, for statistical checks: ``hutchinson_hessian_trace``, ``hutchpp_hessian_trace`` (``trace``) and
``power_top_eigenvalues`` (``deflated_power_iteration``), each with its seed and count.
"""

import numpy as np

from . import _common
from ._common import numpy

eigenthings = _common.require("hessian_eigenthings", "hessian-eigenthings")

LIBRARY = "hessian-eigenthings"
LANCZOS_STEPS = 256
# Relative Ritz residual that counts as converged (hessian-eigenthings' own test: |beta s_i| < tol |lambda_i|), by
# dtype: float32 arithmetic cannot bring a residual to 1e-10, and 1e-5 is well inside float32's tolerance (2e-4).
LANCZOS_TOL = {"float64": 1e-10, "float32": 1e-5}


class NotConvergedError(_common.XvalError, ArithmeticError):
    """An iterative eigensolver whose own convergence test failed for the values asked for."""


def _problem(net, X, Y):
    return _common.setup(net, X, Y, library=LIBRARY)


def _batches(problem):
    return [(problem.X, problem.Y)]


def _hessian_operator(problem):
    return eigenthings.HessianOperator(
        problem.model, _batches(problem), eigenthings.supervised_loss(problem.loss_function)
    )


def _ggn_operator(problem):
    return eigenthings.GGNOperator(
        problem.model,
        _batches(problem),
        eigenthings.supervised_forward,
        eigenthings.supervised_loss_of_output(problem.loss_function),
    )


def _dense(operator, problem):
    t = _common.torch()
    identity = t.eye(operator.size, dtype=problem.X.dtype)
    return numpy(t.stack([operator.matvec(column) for column in identity], dim=1))


def hvp(net, X, Y, v):
    """``(P,)``, ``H v`` by ``HessianOperator.matvec``."""
    vector = _common.tensor(numpy(_common.direction(net, v)), net)
    problem = _problem(net, X, Y)
    return numpy(_hessian_operator(problem).matvec(vector)) * problem.mean_scale


def hessian(net, X, Y):
    """``(P, P)``: ``HessianOperator`` applied to each unit vector."""
    problem = _problem(net, X, Y)
    return _dense(_hessian_operator(problem), problem) * problem.mean_scale


def ggnvp(net, X, Y, v):
    """``(P,)``, ``G v`` by ``GGNOperator.matvec``."""
    vector = _common.tensor(numpy(_common.direction(net, v)), net)
    problem = _problem(net, X, Y)
    return numpy(_ggn_operator(problem).matvec(vector)) * problem.mean_scale


def ggn(net, X, Y):
    """``(P, P)``: ``GGNOperator`` applied to each unit vector."""
    problem = _problem(net, X, Y)
    return _dense(_ggn_operator(problem), problem) * problem.mean_scale


def empirical_fisher(net, X, Y):
    """``(P, P)``: ``EmpiricalFisherOperator`` applied to each unit vector."""
    problem = _problem(net, X, Y)
    operator = eigenthings.EmpiricalFisherOperator(
        problem.model, _batches(problem), eigenthings.supervised_per_sample_loss(problem.loss_function)
    )
    # it averages over samples already; torch's per-sample term is TERM_SCALE loss_n, squared in g g^T
    return _dense(operator, problem) / problem.term_scale**2


def top_eigenvalues(net, X, Y, k):
    """``(k,)``: the ``k`` largest Hessian eigenvalues, descending, by ``lanczos(which="LA")``."""
    k = _common.check_k(net, k)
    problem = _problem(net, X, Y)
    operator = _hessian_operator(problem)
    steps = min(operator.size, max(2 * k, LANCZOS_STEPS))
    result = eigenthings.lanczos(
        operator, k=k, max_iter=steps, tol=LANCZOS_TOL[net.dtype.name], reorthogonalize=True, which="LA", seed=0
    )
    # its own flags test |beta s_i| < tol |lambda_i|, which a zero eigenvalue (a rank-deficient Hessian) never meets:
    # a residual is measured against the spectrum's scale, the largest |lambda| found, instead
    values, residuals = numpy(result.eigenvalues), np.abs(numpy(result.residuals))
    converged = residuals <= LANCZOS_TOL[net.dtype.name] * np.max(np.abs(values), initial=0.0)
    if converged.shape[0] < k:
        # lanczos stops early when the Krylov space is exhausted and then returns fewer than k values, silently
        raise NotConvergedError(
            f"hessian-eigenthings' lanczos returned {converged.shape[0]} eigenvalues for k = {k} "
            f"(its Krylov space ended after {result.iterations} steps: the Hessian has fewer "
            "distinct eigenvalues than that); ask for fewer eigenvalues"
        )
    if not converged.all():
        raise NotConvergedError(
            f"hessian-eigenthings' lanczos did not converge for {int((~converged).sum())} of the "
            f"{k} eigenvalues after {steps} steps (residuals {numpy(result.residuals)}); ask for "
            "fewer eigenvalues or a smaller network"
        )
    return _common.descending(values, k) * problem.mean_scale


# ---- stochastic estimators (checked as statistics) -----------------------------------------------------------
def _trace(net, X, Y, seed, samples, method):
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    problem = _problem(net, X, Y)
    result = eigenthings.trace(_hessian_operator(problem), num_matvecs=samples, method=method, seed=seed)
    return float(result.estimate) * problem.mean_scale


def hutchinson_hessian_trace(net, X, Y, seed, samples):
    """Hutchinson's estimate of ``tr H`` from ``samples`` Rademacher products."""
    return _trace(net, X, Y, seed, samples, "hutchinson")


def hutchpp_hessian_trace(net, X, Y, seed, samples):
    """Hutch++ estimate of ``tr H`` from ``samples`` products."""
    return _trace(net, X, Y, seed, samples, "hutch++")


def power_top_eigenvalues(net, X, Y, k, seed, iterations=1000, tol=1e-12):
    """``(k,)``: ``deflated_power_iteration``'s top-``k`` by magnitude (iterative; its own ``tol``)."""
    k, seed = _common.check_k(net, k), _common.seed(seed)
    problem = _problem(net, X, Y)
    result = eigenthings.deflated_power_iteration(
        _hessian_operator(problem), k=k, max_iter=iterations, tol=tol, seed=seed
    )
    return np.asarray(numpy(result.eigenvalues)) * problem.mean_scale
