"""PyHessian as an engine: its Hessian-vector product, power-iteration eigenvalues and Hutchinson trace.

- ``hvp``: ``pyhessian.utils.hessian_vector_product`` on ``hessian(...).gradsH`` (double backward); the summed
  loss, divided by TERM_SCALE N.

Not in the contract's form, for statistical checks:

- ``power_top_eigenvalues(net, X, Y, k, seed)``: ``hessian.eigenvalues(top_n=k)``, power iteration with deflation. It
  finds the eigenvalues of largest *magnitude* (the contract's ``top_eigenvalues`` are the largest algebraic ones),
  each to PyHessian's own stopping rule (relative change between iterates below ``tol``, not a residual).
- ``hutchinson_hessian_trace(net, X, Y, seed, samples)``: the mean of ``hessian.trace(maxIter=samples, tol=0)``'s
  Rademacher samples (PyHessian returns the samples, not their mean).

PyHessian draws its random vectors with torch's default dtype (float32) and defaults to ``cuda=True``: it runs here
on the CPU with the default dtype set to the network's, so a float64 network's iterations are float64 throughout.
"""

import warnings

import numpy as np

from . import _common
from ._common import numpy

pyhessian = _common.require("pyhessian", "pyhessian")
from pyhessian.utils import hessian_vector_product  # noqa: E402

LIBRARY = "PyHessian"
CONVENTIONS = {
    "top_eigenvalues": "power iteration finds the eigenvalues of largest magnitude (the contract's are the largest "
    "algebraic ones), in the order found, each to a relative-change stopping rule, not a residual "
    "(power_top_eigenvalues)",
}


def _hessian(problem):
    with warnings.catch_warnings():
        # torch warns that backward(create_graph=True) keeps a reference cycle: PyHessian's way, harmless here
        warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True", category=UserWarning)
        return pyhessian.hessian(problem.model, problem.loss_function, data=(problem.X, problem.Y), cuda=False)


def hvp(net, X, Y, v):
    """``(P,)``, ``H v`` by PyHessian's ``hessian_vector_product``."""
    vector = _common.direction(net, v)
    problem = _common.setup(net, X, Y, library=LIBRARY)
    with _common.default_dtype(net):
        hessian = _hessian(problem)
        product = hessian_vector_product(hessian.gradsH, hessian.params, vector)
    return numpy(list(product)) * problem.mean_scale


def power_top_eigenvalues(net, X, Y, k, seed, iterations=1000, tol=1e-12):
    """``(k,)``: PyHessian's power iteration, the ``k`` eigenvalues of largest magnitude in the order found."""
    k, seed = _common.check_k(net, k), _common.seed(seed)
    problem = _common.setup(net, X, Y, library=LIBRARY)
    _common.torch().manual_seed(seed)
    with _common.default_dtype(net):
        values, _ = _hessian(problem).eigenvalues(maxIter=iterations, tol=tol, top_n=k)
    return np.asarray(values, dtype=np.float64) * problem.mean_scale


def hutchinson_hessian_trace(net, X, Y, seed, samples):
    """PyHessian's Hutchinson estimate of ``tr H``: the mean of its Rademacher samples (``trace(maxIter=samples,
    tol=0)``). Biased: its stopping rule ``|mean - previous| / (previous + 1e-6) < tol`` holds whenever the running
    mean is negative, so a run stops after two samples exactly when they came out low (tests/test_peer_findings.py)."""
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    problem = _common.setup(net, X, Y, library=LIBRARY)
    _common.torch().manual_seed(seed)
    with _common.default_dtype(net):
        draws = _hessian(problem).trace(maxIter=samples, tol=0.0)
    return float(np.mean(draws)) * problem.mean_scale
