"""manual's contract functions on any network, through the layer steps of ``manual._sequence``: staged calls (checks
and the memory guard first, then a zero-argument function computing in the selected array library).

Plain MLPs take the dense paths of ``backprop``, ``hvp`` and ``hessian`` for the seven first quantities (the
benchmarks' hot paths); every other network and every curvature quantity comes here.
"""

import numpy as np

from xval import contract
from xval.network import Network
from xval.checks import (
    check_count,
    check_data,
    check_direction,
    check_has_loss,
    check_inputs,
    check_layer,
    check_memory,
)

from . import _sequence, arrays
from ._prepared import prepare_sequence

# The memory guard's factor over ``_sequence.working_entries`` (measured peaks stay below; see tests).
PEAK_FACTOR = 1.5


def estimate(name, method, net, n, **args):
    """``(result, working)`` bytes of ``Sequence.<method>`` computing ``name`` on ``n`` samples."""
    quantity = contract.quantity(name)
    memory_kind = getattr(_sequence.Sequence, method).memory
    working = int(PEAK_FACTOR * _sequence.working_entries(net, memory_kind, n)) * net.dtype.itemsize
    result = quantity.result_cells(net, n, args) * net.dtype.itemsize
    if quantity.dense:  # a dense result is assembled from blocks held beside it: twice its size at the peak (measured)
        working += 2 * result
    return result, working


def _guard(net, name, n, method=None, **args):
    result, working = estimate(name, method or name, net, n, **args)
    check_memory(net, contract.quantity(name), n, args, factor=0.0, first_call=working, engine="manual")


def _staged(sequence, compute):
    lib = sequence.lib
    if not lib.on_gpu:
        return compute

    def run():
        value = compute()
        lib.synchronize()
        return value

    return run


def _data(net, name, X, Y, method=None, **args):
    X, Y = check_data(net, X, Y)
    _guard(net, name, X.shape[0], method, **args)
    sequence = prepare_sequence(net)
    return sequence, sequence.lib.asarray(X, net.dtype), sequence.lib.asarray(Y, net.dtype)


def stage_forward(net, X):
    X = check_inputs(net, X)
    _guard(net, "forward", X.shape[0], method="outputs")
    sequence = prepare_sequence(net)
    X = sequence.lib.asarray(X, net.dtype)
    return _staged(sequence, lambda: sequence.outputs(X))


def stage_loss(net, X, Y):
    sequence, X, Y = _data(net, "loss", X, Y, "loss_value")
    return _staged(sequence, lambda: sequence.loss_value(X, Y))


def _simple(name, method):
    def stage(net, X, Y):
        sequence, X, Y = _data(net, name, X, Y, method)
        return _staged(sequence, lambda: getattr(sequence, method)(X, Y))

    stage.__name__ = f"stage_{name}"
    stage.__doc__ = f"``{name}`` staged: {contract.quantity(name).returns}, in the selected array library."
    stage.method = method
    return stage


stage_gradient = _simple("gradient", "gradient")
stage_per_sample_gradients = _simple("per_sample_gradients", "per_sample_gradients")
stage_hessian = _simple("hessian", "hessian")
stage_ggn = _simple("ggn", "ggn")
stage_hessian_diagonal = _simple("hessian_diagonal", "hessian_diagonal")
stage_ggn_diagonal = _simple("ggn_diagonal", "ggn_diagonal")
stage_empirical_fisher = _simple("empirical_fisher", "empirical_fisher")


def stage_output_jacobian(net, X):
    X = check_inputs(net, X)
    _guard(net, "output_jacobian", X.shape[0])
    sequence = prepare_sequence(net)
    X = sequence.lib.asarray(X, net.dtype)
    return _staged(sequence, lambda: sequence.output_jacobian(X))


stage_forward.method, stage_loss.method, stage_output_jacobian.method = "outputs", "loss_value", "output_jacobian"


def _with_direction(name, method):
    def stage(net, X, Y, v):
        X, Y = check_data(net, X, Y)
        v = check_direction(net, v)
        _guard(net, name, X.shape[0], method)
        sequence = prepare_sequence(net)
        X, Y, v = (sequence.lib.asarray(a, net.dtype) for a in (X, Y, v))
        return _staged(sequence, lambda: getattr(sequence, method)(X, Y, v))

    stage.__name__ = f"stage_{name}"
    stage.method = method
    return stage


stage_hvp = _with_direction("hvp", "hvp")
stage_ggnvp = _with_direction("ggnvp", "ggnvp")


def _block(name, method):
    def stage(net, X, Y, l, m):
        l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
        sequence, X, Y = _data(net, name, X, Y, method, l=l, m=m)
        return _staged(sequence, lambda: getattr(sequence, method)(X, Y, l, m))

    stage.__name__ = f"stage_{name}"
    stage.method = method
    return stage


stage_hessian_block = _block("hessian_block", "hessian_block")
stage_ggn_block = _block("ggn_block", "ggn_block")


def _layer(name, method):
    def stage(net, X, Y, l):
        l = check_layer(net, l, "l")
        net.layer_fan(l)
        sequence, X, Y = _data(net, name, X, Y, method, l=l)
        return _staged(sequence, lambda: getattr(sequence, method)(X, Y, l))

    stage.__name__ = f"stage_{name}"
    stage.method = method
    return stage


stage_kfac_factors = _layer("kfac_factors", "kfac_factors")
stage_kfac_block = _layer("kfac_block", "kfac_block")


def stage_hessian_trace(net, X, Y):
    sequence, X, Y = _data(net, "hessian_trace", X, Y, "hessian_diagonal")
    return _staged(sequence, lambda: sequence.xp.sum(sequence.hessian_diagonal(X, Y)))


stage_hessian_trace.method = "hessian_diagonal"

# Up to this many parameters the eigenvalues come from the dense Hessian; beyond, Lanczos on Hessian-vector products.
DENSE_EIGEN_PARAMETERS = 2000


def top_eigenvalues(net: Network, X: np.ndarray, Y: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest eigenvalues of the Hessian, descending: from the dense Hessian up to
    ``DENSE_EIGEN_PARAMETERS`` parameters, else by Lanczos (scipy's ``eigsh``) on exact Hessian-vector products,
    converged to 1e-10 relative or refused."""
    check_has_loss(net, "top_eigenvalues")
    k = check_count(net, k)
    X, Y = check_data(net, X, Y)
    _guard(net, "top_eigenvalues", X.shape[0], "hessian", k=k)
    if net.n_params <= DENSE_EIGEN_PARAMETERS:
        from . import _dense_hessian as dense

        H = arrays.to_numpy(dense.stage_hessian(net, X, Y)() if net.is_mlp else stage_hessian(net, X, Y)())
        return np.linalg.eigvalsh(H)[::-1][:k].copy()
    return _lanczos(net, X, Y, k)


def _lanczos(net, X, Y, k):
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    from xval.errors import ArgumentError

    from ._dense_hvp import stage_hvp as dense_hvp

    product = dense_hvp if net.is_mlp else stage_hvp
    P = net.n_params

    def matvec(v):
        return arrays.to_numpy(product(net, X, Y, np.asarray(v, dtype=np.float64).reshape(-1))())

    operator = LinearOperator((P, P), matvec=matvec, dtype=np.float64)
    try:
        values = eigsh(operator, k=k, which="LA", tol=1e-12, maxiter=max(1000, 20 * P), return_eigenvectors=False)
    except ArpackNoConvergence:
        raise ArgumentError(
            f"top_eigenvalues(k={k}) did not converge to 1e-10 relative in Lanczos iterations on "
            f"this P = {P} network; ask for fewer eigenvalues (k smaller) or a smaller network"
        ) from None
    return np.sort(values)[::-1].copy()
