"""nngeometry as an engine: its Fisher (FIM), Hessian and Jacobian objects mapped onto the contract.

Each contract function, what computes it in nngeometry, and the mapping.

- ``ggn``: ``FIM(..., PMatDense)``, ``variant="regression"`` for mse (identity covariance: ``Lambda = I``),
  ``"classif_logits"`` for cross_entropy (``diag(p) - p p^T``, exactly, through a Cholesky factor); already the
  batch mean.
- ``ggn_diagonal``: ``FIM(..., PMatDiag)``; as above.
- ``ggn_block(l, l)``: ``FIM(..., PMatBlockDiag)``; ``ggn_block(l, m)``, ``l != m``: ``FIM(..., PMatDense)``'s block
  (nngeometry keeps cross-layer blocks nowhere else); as above.
- ``kfac_factors``, ``kfac_block``: ``FIM(..., PMatKFAC)``; the bias is ``A``'s last row and column (homogeneous);
  the factors come scaled by ``sqrt(n_outputs)`` and ``1/sqrt(n_outputs)``.
- ``hessian``: ``Hessian(..., PMatDense, function=loss)`` of torch's summed loss, divided by TERM_SCALE N.
- ``output_jacobian``: ``Jacobian(...)`` (``PFMapDense``, ``(n_L, N, P)``), transposed to ``(N, n_L, P)``.

nngeometry creates some tensors without a dtype (the ``classif_logits`` factor's triangular matrix, the dense
``PMatKFAC``/``PMatBlockDiag`` matrices, ``torch.finfo().eps``), so it runs here with torch's default dtype set to the
network's (restored after): in float64 without that, cross_entropy raises and the blocks are rounded to float32.

nngeometry's FIM is the Fisher of the model's likelihood, which equals the contract's GGN for these two losses (the
suite's mse is the Gaussian negative log-likelihood with identity covariance, up to a constant). Stochastic:
``mc_ggn`` (``FIM_MonteCarlo``, cross_entropy only: nngeometry has no Monte-Carlo regression variant).
"""

import numpy as np

from . import _common
from ._common import numpy

nngeometry = _common.require("nngeometry", "nngeometry")
from nngeometry.object import pspace  # noqa: E402

LIBRARY = "nngeometry"
# The Fisher variant whose likelihood gives the suite's loss.
VARIANT = {"mse": "regression", "cross_entropy": "classif_logits"}


def _loader(problem):
    """One batch of the whole data set (nngeometry divides by ``len(loader.sampler)``: the batch mean)."""
    t = _common.torch()
    dataset = t.utils.data.TensorDataset(problem.X, problem.Y)
    return t.utils.data.DataLoader(dataset, batch_size=problem.n, shuffle=False)


def _fim(net, X, Y, representation):
    problem = _common.setup(net, X, Y, library=LIBRARY)
    with _common.default_dtype(net):
        return problem, nngeometry.FIM(problem.model, _loader(problem), representation, variant=VARIANT[net.loss])


def ggn(net, X, Y):
    """``(P, P)``, ``G``, as nngeometry's dense FIM."""
    _, matrix = _fim(net, X, Y, pspace.PMatDense)
    return numpy(matrix.to_torch())


def ggn_diagonal(net, X, Y):
    """``(P,)``: the diagonal FIM (``PMatDiag``)."""
    _, matrix = _fim(net, X, Y, pspace.PMatDiag)
    return numpy(matrix.get_diag())


def ggn_block(net, X, Y, l, m):
    """``(P_l, P_m)``: a same-layer block from the block-diagonal FIM (``PMatBlockDiag``); a cross-layer block from the
    dense FIM (``PMatDense``: nngeometry keeps cross-layer blocks nowhere else)."""
    l, m = _common.layer(net, l), _common.layer(net, m, "m")
    _, matrix = _fim(net, X, Y, pspace.PMatBlockDiag if l == m else pspace.PMatDense)
    with _common.default_dtype(net):
        full = numpy(matrix.to_torch())
    return full[net.param_slices[l], net.param_slices[m]]


def _kfac(net, X, Y, l):
    l = _common.layer(net, l)
    problem, matrix = _fim(net, X, Y, pspace.PMatKFAC)
    layer_id = problem.linear_name(l)
    A, G = matrix.data[layer_id]
    return problem, matrix, numpy(A), numpy(G)


def _n_outputs(net):
    """The rows of nngeometry's Fisher factor per sample: ``n_L`` for regression, ``n_L - 1`` for classif_logits
    (its Cholesky factor of ``diag(p) - p p^T`` drops the last, rank-deficient direction)."""
    return net.sizes[-1] if net.loss == "mse" else net.sizes[-1] - 1


def kfac_factors(net, X, Y, l):
    """``(A_l, G_l)`` from ``PMatKFAC`` (bias last in ``A``, as the contract's ``[z; 1]``)."""
    _, _, A, G = _kfac(net, X, Y, l)
    # nngeometry divides A by N / sqrt(n_outputs) and G by sqrt(n_outputs) N: only their product is the mean
    scale = np.sqrt(_n_outputs(net))
    return A / scale, G * scale


def kfac_block(net, X, Y, l):
    """``(P_l, P_l)``: ``PMatKFAC.to_torch()``'s layer-``l`` block (nngeometry orders it ``W`` row-major then ``b``)."""
    problem, matrix, _, _ = _kfac(net, X, Y, l)
    rows = net.param_slices[_common.layer(net, l)]
    with _common.default_dtype(net):
        return numpy(matrix.to_torch())[rows, rows]


def hessian(net, X, Y):
    """``(P, P)``, ``d2E/dtheta2``, from nngeometry's ``Hessian`` of torch's summed loss."""
    problem = _common.setup(net, X, Y, library=LIBRARY)
    matrix = nngeometry.Hessian(problem.model, _loader(problem), pspace.PMatDense, function=problem.loss_function)
    # the summed loss: divide by TERM_SCALE N
    return numpy(matrix.to_torch()) * problem.mean_scale


def output_jacobian(net, X):
    """``(N, n_L, P)`` from nngeometry's ``Jacobian`` (``(n_L, N, P)`` there)."""
    t = _common.torch()
    X = _common.inputs(net, X, LIBRARY)
    model = net.to_torch()
    loader = t.utils.data.DataLoader(t.utils.data.TensorDataset(X), batch_size=X.shape[0], shuffle=False)
    jacobian = nngeometry.Jacobian(model, loader, function=lambda x: model(x))
    return np.transpose(numpy(jacobian.to_torch()), (1, 0, 2))


def mc_ggn(net, X, Y, seed, samples):
    """``(P, P)``: ``FIM_MonteCarlo``'s estimate of ``ggn`` with ``samples`` sampled classes per sample (cross_entropy
    only)."""
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    if net.loss != "cross_entropy":
        raise _common.UnsupportedError(
            "nngeometry's FIM_MonteCarlo has classification variants only (no regression); "
            "use a cross_entropy network, or ggn for the exact matrix"
        )
    problem = _common.setup(net, X, Y, library=LIBRARY)
    _common.torch().manual_seed(seed)
    with _common.default_dtype(net):
        matrix = nngeometry.FIM_MonteCarlo(problem.model, _loader(problem), pspace.PMatDense, trials=samples)
        return numpy(matrix.to_torch())
