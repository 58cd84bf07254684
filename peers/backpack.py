"""BackPACK (backpack-for-pytorch) as an engine: its extensions mapped onto the contract.

Each contract function, what computes it in BackPACK, and the mapping (TERM_SCALE: torch's summed loss term over the
suite's loss_n).

- ``per_sample_gradients``: ``BatchGrad`` (``grad_batch``); row n is d(TERM_SCALE loss_n), divided by TERM_SCALE.
- ``hessian_diagonal``: ``DiagHessian`` (``diag_h``); a sum over samples, divided by TERM_SCALE N.
- ``ggn_diagonal``: ``DiagGGNExact`` (``diag_ggn_exact``); as above.
- ``ggn``, ``ggn_block``, ``ggnvp``: ``SqrtGGNExact`` (``sqrt_ggn_exact``, ``(C, N, *p.shape)``), ``G = S^T S`` over
  all rows; ``ggnvp`` from ``backpack.hessianfree.ggnvp``; as above.
- ``hvp``: ``backpack.hessianfree.hvp.hessian_vector_product``; as above.
- ``kflr_factors``, ``kflr_block``: ``KFLR`` (``kflr``: weight ``[G, A]``, bias ``[G]``); no homogeneous coordinate.

Not in the contract's form: BackPACK's KFLR keeps the weight and the bias apart (weight ``kron(G, A_z)`` with
``A_z = (1/N) sum z z^T``, bias ``G``) and drops the weight-bias cross terms, so it has neither the contract's
``A_l`` over ``[z; 1]`` nor its ``kfac_block``. ``kflr_factors`` returns ``(A_z, G_l)``, which equal the contract's
``(A_l[:-1, :-1], G_l)``; ``kflr_block`` returns BackPACK's block-diagonal layer block. ``HMP``/``GGNMP`` (products
with the per-parameter diagonal blocks) give ``hessian_parameter_block``/``ggn_parameter_block`` (the ``W_l``-``W_l``
or ``b_l``-``b_l`` sub-block of the layer's block), not the contract's layer blocks, which have weight-bias terms.

Stochastic (Monte-Carlo) estimators, for statistical checks: ``mc_ggn_diagonal`` (``DiagGGNMC``), ``mc_ggn``
(``SqrtGGNMC``), each with an explicit ``seed`` and number of ``samples``; ``mc_kflr_factors`` (``KFAC``: the
Monte-Carlo twin of ``kflr_factors``, in BackPACK's layout, so not an estimator of the contract's ``kfac_factors``).

Cross-entropy targets: BackPACK's second-order extensions take torch's ``CrossEntropyLoss``; the adapter passes the
suite's probability rows as torch's probability targets where BackPACK accepts them, class indices otherwise.
"""

import warnings

import numpy as np

from . import _common
from ._common import numpy, rows

_backpack = _common.require("backpack", "backpack-for-pytorch")
from backpack import backpack, extend, extensions  # noqa: E402
from backpack.hessianfree.ggnvp import ggn_vector_product  # noqa: E402
from backpack.hessianfree.hvp import hessian_vector_product  # noqa: E402

LIBRARY = "BackPACK"
# Contract quantities BackPACK computes only in its own form (xval.conformance lists them as conventions).
CONVENTIONS = {
    "kfac_factors": "KFLR keeps weight and bias apart: A over z without the homogeneous 1 (the contract's "
    "A_l[:-1, :-1]), G as the contract's G_l (kflr_factors; its KFAC extension is the Monte-Carlo "
    "twin, mc_kflr_factors)",
    "kfac_block": "KFLR's layer block is weight kron(G, A_z) and bias G, without the weight-bias terms of the "
    "contract's kron(G_l, A_l) (kflr_block)",
    "hessian_block": "HMP multiplies by one parameter's block (W_l with W_l, or b_l with b_l), not a layer's block "
    "with its weight-bias terms (hessian_parameter_block)",
}


def _extended(net, X, Y, targets="classes"):
    """The problem with BackPACK's hooks on the model and the loss. BackPACK's cross-entropy second-order code reads
    class indices (``_get_probs`` needs nothing else, but its MC sampler and checks assume them), so one-hot rows
    are turned into classes; soft targets are refused with BackPACK's constraint named."""
    problem = _common.setup(net, X, Y, targets=targets, library=LIBRARY)
    problem.model = extend(problem.model)
    problem.loss_function = extend(problem.loss_function)
    return problem


def _backward(problem, *extension):
    """One forward and backward pass of the summed loss with ``extension`` active; the outputs (for GGN products)."""
    output = problem.model(problem.X)
    loss = problem.loss_function(output, problem.Y)
    names = ", ".join(type(e).__name__ for e in extension)
    with _common.refusals(LIBRARY, names), backpack(*extension), warnings.catch_warnings():
        # torch warns that the hooks fire for outputs when X needs no gradient: that is how BackPACK works here
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        loss.backward()
    return output, loss


def per_sample_gradients(net, X, Y):
    """``(N, P)``: row n = d loss_n / dtheta, from ``BatchGrad``."""
    problem = _extended(net, X, Y, targets="probabilities")
    _backward(problem, extensions.BatchGrad())
    # sum reduction: BatchGrad's row n is the gradient of TERM_SCALE * loss_n
    return rows([p.grad_batch for p in problem.params], problem.n) / problem.term_scale


def hessian_diagonal(net, X, Y):
    """``(P,)``, the diagonal of ``d2E/dtheta2``, from ``DiagHessian``."""
    problem = _extended(net, X, Y, targets="probabilities")
    _backward(problem, extensions.DiagHessian())
    # sum reduction over the batch: divide by TERM_SCALE * N for E
    return numpy([p.diag_h for p in problem.params]) * problem.mean_scale


def ggn_diagonal(net, X, Y):
    """``(P,)``, the diagonal of ``G = (1/N) sum_n J_n^T Lambda_n J_n``, from ``DiagGGNExact``."""
    problem = _extended(net, X, Y, targets="probabilities")
    _backward(problem, extensions.DiagGGNExact())
    return numpy([p.diag_ggn_exact for p in problem.params]) * problem.mean_scale


def _sqrt_ggn(problem, extension, field):
    """``S`` ``(rows, P)`` with ``G_library = S^T S``: BackPACK's ``(C, N, *p.shape)`` per parameter, flattened."""
    _backward(problem, extension)
    pieces = [getattr(p, field) for p in problem.params]
    n_rows = pieces[0].shape[0] * pieces[0].shape[1]
    return rows([piece.reshape(n_rows, -1) for piece in pieces], n_rows)


def ggn(net, X, Y):
    """``(P, P)``, ``G``, as ``S^T S`` from ``SqrtGGNExact``."""
    problem = _extended(net, X, Y, targets="probabilities")
    S = _sqrt_ggn(problem, extensions.SqrtGGNExact(), "sqrt_ggn_exact")
    return S.T @ S * problem.mean_scale


def ggn_block(net, X, Y, l, m):
    """``(P_l, P_m)`` block of ``G`` from ``SqrtGGNExact``'s rows of layers ``l`` and ``m``."""
    l, m = _common.layer(net, l), _common.layer(net, m, "m")
    problem = _extended(net, X, Y, targets="probabilities")
    S = _sqrt_ggn(problem, extensions.SqrtGGNExact(), "sqrt_ggn_exact")
    rows_l, columns_m = _common.block_slices(net, l, m)
    return S[:, rows_l].T @ S[:, columns_m] * problem.mean_scale


def ggnvp(net, X, Y, v):
    """``(P,)``, ``G v`` by ``backpack.hessianfree.ggnvp.ggn_vector_product`` (never forming ``G``)."""
    vector = _common.direction(net, v)
    problem = _common.setup(net, X, Y, library=LIBRARY)
    output = problem.model(problem.X)
    loss = problem.loss_function(output, problem.Y)
    return numpy(ggn_vector_product(loss, output, problem.model, vector)) * problem.mean_scale


def hvp(net, X, Y, v):
    """``(P,)``, ``H v`` by ``backpack.hessianfree.hvp.hessian_vector_product``."""
    vector = _common.direction(net, v)
    problem = _common.setup(net, X, Y, library=LIBRARY)
    loss = problem.loss_function(problem.model(problem.X), problem.Y)
    return numpy(hessian_vector_product(loss, problem.params, vector)) * problem.mean_scale


def _parameter_block(net, X, Y, l, parameter, extension, field):
    l = _common.layer(net, l)
    if parameter not in ("weight", "bias"):
        raise _common.ArgumentError(f"parameter is {parameter!r}, but it must be 'weight' or 'bias'")
    problem = _extended(net, X, Y, targets="probabilities")
    _backward(problem, extension)
    p = getattr(problem.linear(l), parameter)
    size = p.numel()
    identity = _common.torch().eye(size, dtype=p.dtype).reshape(size, *p.shape)
    # BackPACK's products take a batch of V matrices (V, *p.shape) and return the same layout
    product = getattr(p, field)(identity)
    return numpy(product).reshape(size, size).T * problem.mean_scale


def hessian_parameter_block(net, X, Y, l, parameter):
    """``(P_p, P_p)``: the Hessian of ``E`` in one parameter of layer ``l`` (``"weight"``: ``W_l`` row-major, or
    ``"bias"``), from BackPACK's ``HMP`` applied to the identity."""
    return _parameter_block(net, X, Y, l, parameter, extensions.HMP(), "hmp")


def ggn_parameter_block(net, X, Y, l, parameter):
    """``(P_p, P_p)``: the GGN of ``E`` in one parameter of layer ``l``, from BackPACK's ``GGNMP``."""
    return _parameter_block(net, X, Y, l, parameter, extensions.GGNMP(), "ggnmp")


def _kronecker(net, X, Y, l, extension, field):
    l = _common.layer(net, l)
    problem = _extended(net, X, Y, targets="classes")
    _backward(problem, extension)
    layer = problem.linear(l)
    G_weight, A = getattr(layer.weight, field)
    # BackPACK's A is already the batch mean (1/N) sum z z^T; its G sums TERM_SCALE * Lambda_n over the batch
    return numpy(A), numpy(G_weight) * problem.mean_scale


def kflr_factors(net, X, Y, l):
    """``(A_z, G_l)`` from ``KFLR``: ``A_z = (1/N) sum_n z_n z_n^T`` ``(n_l, n_l)`` (no homogeneous coordinate: the
    contract's ``A_l[:-1, :-1]``) and ``G_l = (1/N) sum_n B_n^T Lambda_n B_n`` ``(n_{l+1}, n_{l+1})``."""
    return _kronecker(net, X, Y, l, extensions.KFLR(), "kflr")


def kflr_block(net, X, Y, l):
    """``(P_l, P_l)``: BackPACK's KFLR approximation of layer ``l``'s GGN block in the contract's order: weight block
    ``kron(G_l, A_z)``, bias block ``G_l``, no weight-bias terms."""
    A, G = kflr_factors(net, X, Y, l)
    n_weight = G.shape[0] * A.shape[0]
    block = np.zeros((n_weight + G.shape[0],) * 2)
    block[:n_weight, :n_weight] = np.kron(G, A)
    block[n_weight:, n_weight:] = G
    return block


def kfra_factors(net, X, Y, l):
    """``(A_z, G_l)`` from ``KFRA`` (its ``G_l`` backpropagates the batch-averaged curvature, so it equals the
    contract's ``G_l`` only at N = 1 or for the last layer)."""
    return _kronecker(net, X, Y, l, extensions.KFRA(), "kfra")


def mc_ggn_diagonal(net, X, Y, seed, samples):
    """``(P,)``: ``DiagGGNMC``'s Monte-Carlo estimate of ``ggn_diagonal`` with ``samples`` draws per sample
    (unbiased for the contract's ``ggn_diagonal``: checked as a statistic)."""
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    problem = _extended(net, X, Y, targets="classes")
    _common.torch().manual_seed(seed)
    _backward(problem, extensions.DiagGGNMC(mc_samples=samples))
    return numpy([p.diag_ggn_mc for p in problem.params]) * problem.mean_scale


def mc_ggn(net, X, Y, seed, samples):
    """``(P, P)``: ``SqrtGGNMC``'s Monte-Carlo estimate of ``ggn``."""
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    problem = _extended(net, X, Y, targets="classes")
    _common.torch().manual_seed(seed)
    S = _sqrt_ggn(problem, extensions.SqrtGGNMC(mc_samples=samples), "sqrt_ggn_mc")
    return S.T @ S * problem.mean_scale


def mc_kflr_factors(net, X, Y, l, seed, samples):
    """``(A_z, G_l)`` from BackPACK's ``KFAC`` (Monte-Carlo ``G_l``; ``A_z`` as in ``kflr_factors``)."""
    seed, samples = _common.seed(seed), _common.positive_count("samples", samples)
    _common.torch().manual_seed(seed)
    return _kronecker(net, X, Y, l, extensions.KFAC(mc_samples=samples), "kfac")
