"""curvlinops (curvlinops-for-pytorch) as an engine: its linear operators mapped onto the contract.

Each contract function, what computes it in curvlinops, and the mapping (TERM_SCALE: torch's summed loss term over
the suite's loss_n).

- ``hessian``, ``hvp``, ``hessian_block``: ``HessianLinearOperator`` (blocks through ``SubmatrixLinearOperator``);
  the summed loss, divided by TERM_SCALE N.
- ``ggn``, ``ggnvp``, ``ggn_block``, ``ggn_diagonal``: ``GGNLinearOperator``; as above.
- ``hessian_diagonal``: ``HessianLinearOperator`` applied to the unit vectors; as above.
- ``empirical_fisher``: ``EFLinearOperator``; it sums (TERM_SCALE g_n)(TERM_SCALE g_n)^T, divided by TERM_SCALE^2 N.
- ``output_jacobian``: ``JacobianLinearOperator`` (rows ``(n, c)``), reshaped to ``(N, n_L, P)``.
- ``kfac_factors``, ``kfac_block``: ``KFACLinearOperator(fisher_type="type-2", separate_weight_and_bias=False)``.
- ``top_eigenvalues``: ``HessianLinearOperator.to_scipy()`` through scipy's ``eigsh`` (curvlinops' documented
  route); as ``hessian``.

KFAC: curvlinops' default ``fisher_type`` is ``"mc"`` (Monte-Carlo), and by default it keeps weight and bias apart
(``separate_weight_and_bias=True``, no weight-bias terms). ``"type-2"`` backpropagates the exact loss Hessian's
square root (the contract's ``Lambda_n``), and ``separate_weight_and_bias=False`` appends the bias as a last column of
``W`` (the homogeneous ``[z; 1]`` of the contract's ``A_l``); its Kronecker product then indexes the row-major
``[W | b]``, which ``kfac_block`` reorders into ``W`` row-major, then ``b``. Its input covariance ``A`` is already
the batch mean; its gradient covariance sums TERM_SCALE ``Lambda_n`` terms (divide by TERM_SCALE N).
``kfac_separate_block`` gives curvlinops' default layout (weight ``kron(G, A_z)``, bias ``G``).

Stochastic estimators, for statistical checks (explicit ``seed``, counts): ``mc_ggn`` (``FisherMCLinearOperator``),
``mc_kfac_factors`` (KFAC with ``fisher_type="mc"``), ``hutchinson_hessian_trace``, ``hutchpp_hessian_trace``,
``xtrace_hessian_trace``, ``hutchinson_hessian_diagonal``, ``xdiag_hessian_diagonal``.
"""

import numpy as np

from . import _common
from ._common import numpy

curvlinops = _common.require("curvlinops", "curvlinops-for-pytorch")

LIBRARY = "curvlinops"


def _operator(kind, problem, **options):
    """``kind`` (a curvlinops operator class name) over the problem's model, summed loss, parameters and one batch."""
    cls = getattr(curvlinops, kind)
    # its self-check (the operator applied twice must agree) costs a second pass; the suite compares the results
    options.setdefault("check_deterministic", False)
    return cls(problem.model, problem.loss_function, problem.params, [(problem.X, problem.Y)], **options)


def _dense(operator, problem):
    """The operator applied to the identity, ``(P, P)`` (curvlinops' matrix-matrix product)."""
    t = _common.torch()
    size = operator.shape[1]
    return numpy(operator @ t.eye(size, dtype=problem.X.dtype))


def _problem(net, X, Y, targets="probabilities"):
    return _common.setup(net, X, Y, targets=targets, library=LIBRARY)


def hessian(net, X, Y):
    """``(P, P)``, ``d2E/dtheta2``, from ``HessianLinearOperator``."""
    problem = _problem(net, X, Y)
    # sum reduction: the operator is the Hessian of sum_n TERM_SCALE loss_n
    return _dense(_operator("HessianLinearOperator", problem), problem) * problem.mean_scale


def hvp(net, X, Y, v):
    """``(P,)``, ``H v`` from ``HessianLinearOperator``."""
    vector = numpy(_common.direction(net, v))
    problem = _problem(net, X, Y)
    operator = _operator("HessianLinearOperator", problem)
    return numpy(operator @ _common.tensor(vector, net)) * problem.mean_scale


def _indices(net, l):
    return list(range(*net.param_slices[l].indices(net.n_params)))


def _block(kind, net, X, Y, l, m):
    l, m = _common.layer(net, l), _common.layer(net, m, "m")
    problem = _problem(net, X, Y)
    block = curvlinops.SubmatrixLinearOperator(_operator(kind, problem), _indices(net, l), _indices(net, m))
    t = _common.torch()
    return numpy(block @ t.eye(block.shape[1], dtype=problem.X.dtype)) * problem.mean_scale


def hessian_block(net, X, Y, l, m):
    """``(P_l, P_m)`` block of the Hessian, from ``SubmatrixLinearOperator`` of ``HessianLinearOperator``."""
    return _block("HessianLinearOperator", net, X, Y, l, m)


def hessian_diagonal(net, X, Y):
    """``(P,)``: the diagonal of ``HessianLinearOperator`` (curvlinops has no exact diagonal; this forms ``H``)."""
    return np.diag(hessian(net, X, Y)).copy()


def ggn(net, X, Y):
    """``(P, P)``, ``G``, from ``GGNLinearOperator``."""
    problem = _problem(net, X, Y)
    return _dense(_operator("GGNLinearOperator", problem), problem) * problem.mean_scale


def ggnvp(net, X, Y, v):
    """``(P,)``, ``G v`` from ``GGNLinearOperator`` (one matrix-vector product)."""
    vector = numpy(_common.direction(net, v))
    problem = _problem(net, X, Y)
    return numpy(_operator("GGNLinearOperator", problem) @ _common.tensor(vector, net)) * problem.mean_scale


def ggn_block(net, X, Y, l, m):
    """``(P_l, P_m)`` block of ``G``, from ``SubmatrixLinearOperator`` of ``GGNLinearOperator``."""
    return _block("GGNLinearOperator", net, X, Y, l, m)


def ggn_diagonal(net, X, Y):
    """``(P,)``: the diagonal of ``GGNLinearOperator`` (formed densely: curvlinops estimates diagonals only)."""
    return np.diag(ggn(net, X, Y)).copy()


def empirical_fisher(net, X, Y):
    """``(P, P)``, ``(1/N) sum_n g_n g_n^T``, from ``EFLinearOperator``."""
    # its per-sample loss flattens cross-entropy labels as class indices (probability rows raise a batch-size error)
    problem = _problem(net, X, Y, targets="classes")
    # sum reduction: the operator sums (TERM_SCALE g_n)(TERM_SCALE g_n)^T over the batch
    return _dense(_operator("EFLinearOperator", problem), problem) / (problem.term_scale**2 * problem.n)


def output_jacobian(net, X):
    """``(N, n_L, P)`` from ``JacobianLinearOperator`` (rows ordered ``(n, c)``)."""
    t = _common.torch()
    X = _common.inputs(net, X, LIBRARY)
    model = net.to_torch()
    params = list(model.parameters())
    # The operator wants (X, y) pairs; the Jacobian does not read y.
    operator = curvlinops.JacobianLinearOperator(model, params, [(X, t.zeros(X.shape[0]))], check_deterministic=False)
    J = numpy(operator @ t.eye(net.n_params, dtype=X.dtype))
    return J.reshape(X.shape[0], net.sizes[-1], net.n_params)


def _kfac(net, X, Y, l, **options):
    l = _common.layer(net, l)
    problem = _problem(net, X, Y)
    layer = problem.linear(l)
    operator = curvlinops.KFACLinearOperator(
        problem.model,
        problem.loss_function,
        [layer.weight, layer.bias],
        [(problem.X, problem.Y)],
        check_deterministic=False,
        **options,
    )
    # compute_kronecker_factors() adds to factors already there, and the constructor's deterministic check (when on)
    # has computed them once: compute only when absent (docs/findings: calling it again doubles them)
    if not operator.state_dict()["gradient_covariances"]:
        operator.compute_kronecker_factors()
    state = operator.state_dict()
    name = problem.linear_name(l)
    A = numpy(state["input_covariances"][name])
    # the gradient covariance sums TERM_SCALE Lambda_n over the batch; A is already the batch mean
    G = numpy(state["gradient_covariances"][name]) * problem.mean_scale
    return operator, problem, A, G


def kfac_factors(net, X, Y, l):
    """``(A_l, G_l)``: ``A_l`` ``(n_l + 1, n_l + 1)`` over ``[z_l; 1]``, ``G_l`` ``(n_{l+1}, n_{l+1})``, from
    ``KFACLinearOperator`` with the exact (type-2) loss Hessian and the bias as ``W``'s last column."""
    _, _, A, G = _kfac(net, X, Y, l, fisher_type="type-2", separate_weight_and_bias=False)
    return A, G


def kfac_block(net, X, Y, l):
    """``(P_l, P_l)``: ``KFACLinearOperator``'s layer-``l`` matrix (type-2, joint weight and bias) applied to the
    identity, in the contract's order (``W_l`` row-major, then ``b_l``)."""
    operator, problem, _, _ = _kfac(net, X, Y, l, fisher_type="type-2", separate_weight_and_bias=False)
    t = _common.torch()
    return numpy(operator @ t.eye(operator.shape[1], dtype=problem.X.dtype)) * problem.mean_scale


def kfac_separate_block(net, X, Y, l):
    """``(P_l, P_l)``: curvlinops' default layout (``separate_weight_and_bias=True``), type-2: weight block
    ``kron(G, A_z)``, bias block ``G``, no weight-bias terms."""
    operator, problem, _, _ = _kfac(net, X, Y, l, fisher_type="type-2", separate_weight_and_bias=True)
    t = _common.torch()
    return numpy(operator @ t.eye(operator.shape[1], dtype=problem.X.dtype)) * problem.mean_scale


def top_eigenvalues(net, X, Y, k):
    """``(k,)``: the ``k`` largest eigenvalues of the Hessian, descending, by scipy's ``eigsh`` on curvlinops'
    ``to_scipy()`` operator (dense ``eigvalsh`` of the operator when ``k`` reaches ``P``, which eigsh refuses)."""
    from scipy.sparse.linalg import eigsh

    k = _common.check_k(net, k)
    problem = _problem(net, X, Y)
    operator = _operator("HessianLinearOperator", problem)
    if k >= net.n_params - 1:
        values = np.linalg.eigvalsh(_dense(operator, problem))
    else:
        values = eigsh(operator.to_scipy(dtype=np.float64), k=k, which="LA", tol=0, return_eigenvectors=False)
    return _common.descending(values, k) * problem.mean_scale


# ---- stochastic estimators (checked as statistics) -----------------------------------------------------------
def mc_ggn(net, X, Y, seed, samples):
    """``(P, P)``: ``FisherMCLinearOperator``'s Monte-Carlo Fisher with ``samples`` labels per sample."""
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    problem = _problem(net, X, Y)
    operator = _operator("FisherMCLinearOperator", problem, seed=seed, mc_samples=samples)
    return _dense(operator, problem) * problem.mean_scale


def mc_kfac_factors(net, X, Y, l, seed, samples):
    """``(A_l, G_l)`` with ``KFACLinearOperator``'s Monte-Carlo ``G_l`` (``fisher_type="mc"``)."""
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    _, _, A, G = _kfac(net, X, Y, l, fisher_type="mc", mc_samples=samples, seed=seed, separate_weight_and_bias=False)
    return A, G


def _estimate(function, net, X, Y, seed, samples):
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    problem = _problem(net, X, Y)
    if samples >= net.n_params:  # its estimators refuse as many products as the dimension (then form the matrix)
        raise _common.UnsupportedError(
            f"curvlinops' trace and diagonal estimators take fewer products than the "
            f"number of parameters, but samples = {samples} >= P = {net.n_params}; use "
            "hessian_trace or hessian_diagonal for the exact value"
        )
    _common.torch().manual_seed(seed)
    return numpy(function(_operator("HessianLinearOperator", problem), samples)) * problem.mean_scale


def hutchinson_hessian_trace(net, X, Y, seed, samples):
    """Girard-Hutchinson estimate of ``tr H`` with ``samples`` Rademacher products (``curvlinops.hutchinson_trace``)."""
    return float(_estimate(curvlinops.hutchinson_trace, net, X, Y, seed, samples))


def hutchpp_hessian_trace(net, X, Y, seed, samples):
    """Hutch++ estimate of ``tr H`` with ``samples`` products (``curvlinops.hutchpp_trace``)."""
    return float(_estimate(curvlinops.hutchpp_trace, net, X, Y, seed, samples))


def xtrace_hessian_trace(net, X, Y, seed, samples):
    """XTrace estimate of ``tr H`` with ``samples`` products (``curvlinops.xtrace``)."""
    return float(_estimate(curvlinops.xtrace, net, X, Y, seed, samples))


def hutchinson_hessian_diagonal(net, X, Y, seed, samples):
    """Girard-Hutchinson estimate of ``diag H`` (``curvlinops.hutchinson_diag``)."""
    return _estimate(curvlinops.hutchinson_diag, net, X, Y, seed, samples)


def xdiag_hessian_diagonal(net, X, Y, seed, samples):
    """XDiag estimate of ``diag H`` (``curvlinops.xdiag``)."""
    return _estimate(curvlinops.xdiag, net, X, Y, seed, samples)
