"""Stochastic estimators judged as statistics: a Monte-Carlo Fisher, a Hutchinson trace or diagonal is right when it
is unbiased for the exact quantity, which one run cannot show and one unlucky seed must not refute.

An estimator is a function named ``<method>_<quantity>`` (``mc_ggn``, ``hutchinson_hessian_trace``) with ``method`` in
``METHODS`` and ``quantity`` a contract quantity, called like the quantity with two more arguments, ``seed`` and
``samples``: ``mc_kfac_factors(net, X, Y, l, seed, samples)``, returning what the quantity returns.

The verdict (``judge``): over ``seeds`` independent runs, one fixed positive linear functional of the estimate (``w^T M
w`` for a matrix, so that a positive semi-definite signal adds up instead of cancelling) has its mean within ``Z``
standard errors (from the runs' own spread) of the functional of the exact value. A factor 2, a missing ``1/N`` or a
wrong loss Hessian lies far outside; an estimate so noisy that ``Z`` standard errors reach half the value could hide a
factor 2, so it gets no verdict ("not checked") rather than a pass, and so do runs that all gave the same value (a
saturated softmax whose other labels have probability below 1 / (runs x samples): no draw reaches them, so the
spread, and with it the statistic, says nothing about them).
"""

import re
from dataclasses import dataclass

import numpy as np

# Samples per estimate, by method: enough that the relative standard error of the mean over 16 seeds stays well
# under 0.1 on the case table (measured 0.005-0.06), so a factor 2 is many standard errors away.
METHODS = {"mc": 64, "hutchinson": 32, "hutchpp": 24, "xtrace": 24, "xdiag": 24}
SEEDS = 16
Z = 5.0  # standard errors: one statistic per (estimator, case), so five is a real bound, not one of thousands
MAX_RELATIVE_STANDARD_ERROR = 0.1  # above it Z standard errors reach half the value: a factor 2 could pass


def parse(name, quantities):
    """``(method, quantity)`` when ``name`` is an estimator of one of ``quantities`` (names), else ``None``."""
    match = re.fullmatch(rf"({'|'.join(METHODS)})_(\w+)", name)
    if match and match.group(2) in quantities:
        return match.group(1), match.group(2)
    return None


@dataclass
class Statistic:
    """The statistical verdict on one estimator: ``mean`` of the functional over the runs, ``target`` (the exact
    value's), ``standard_error`` of the mean, ``z = |mean - target| / standard_error``, ``relative_standard_error =
    standard_error / |target|``, and the ``status``: ``pass``, ``fail`` (biased beyond ``Z``) or ``not checked`` (too
    noisy to see a factor 2, or an exact value of zero)."""

    mean: float
    target: float
    standard_error: float
    z: float
    relative_standard_error: float
    status: str
    runs: int

    def text(self):
        if self.status == "not checked" and self.standard_error == 0:
            return (
                f"every one of the {self.runs} runs gave {self.mean:.6g} (exact {self.target:.6g}): the random "
                "draws never varied it, so there is no spread to judge a bias by"
            )
        if self.status == "not checked":
            return (
                f"too noisy to judge: relative standard error {self.relative_standard_error:.2g} over {self.runs} "
                f"runs (at most {MAX_RELATIVE_STANDARD_ERROR:g} to see a factor 2)"
            )
        return (
            f"mean {self.mean:.6g} vs exact {self.target:.6g}: {self.z:.2g} standard errors "
            f"({self.standard_error:.2g}, {self.runs} runs; fails beyond {Z:g})"
        )


def parts(value):
    """The arrays of a value: itself, or each of a tuple (``kfac_factors``), as float64."""
    return (
        [np.asarray(part, dtype=np.float64) for part in value]
        if isinstance(value, (tuple, list))
        else [np.asarray(value, dtype=np.float64)]
    )


def _functional(shape):
    """Positive weights for an array of ``shape``: ``w`` for a vector, ``w w^T`` for a square matrix, 1 for a float."""
    if not shape:
        return np.ones(())
    w = 1.0 + np.random.default_rng(0).random(shape[0])
    return np.outer(w, w) if len(shape) == 2 else w if len(shape) == 1 else np.ones(shape)


def judge(values, exact, rtol=1e-10):
    """The ``Statistic`` of the estimates ``values`` (one per seed; arrays, floats or tuples of arrays such as
    ``kfac_factors``) against ``exact``. A tuple is judged part by part and the worst part reported. ``rtol``: the
    rounding of the dtype, added to the bound (an estimator with no spread must equal the exact value to it)."""
    truths = parts(exact)
    statistics = []
    for index, truth in enumerate(truths):
        weights = _functional(truth.shape)
        samples = np.array([float(np.sum(weights * parts(value)[index])) for value in values])
        target = float(np.sum(weights * truth))
        standard_error = float(samples.std(ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else float("inf")
        mean = float(samples.mean())
        slack = rtol * abs(target)
        z = (
            abs(mean - target) / standard_error
            if standard_error > 0
            else (0.0 if abs(mean - target) <= slack else float("inf"))
        )
        relative = standard_error / abs(target) if target != 0 else float("inf")
        if standard_error == 0 and abs(mean - target) > slack:
            # every run gave the same value: the draws never reached what the exact value is made of (labels of a
            # saturated softmax with probability below 1 / (runs x samples)), so there is no spread to judge by
            status = "not checked"
        elif abs(mean - target) > Z * standard_error + slack:
            status = "fail"
        elif relative > MAX_RELATIVE_STANDARD_ERROR:
            status = "not checked"
        else:
            status = "pass"
        statistics.append(Statistic(mean, target, standard_error, z, relative, status, len(samples)))
    order = {"fail": 2, "not checked": 1, "pass": 0}
    return max(statistics, key=lambda s: (order[s.status], s.z if np.isfinite(s.z) else np.inf))
