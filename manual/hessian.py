"""Exact Hessian blocks of ``E = (1/N) sum_n loss_n``, written out (derivation: ``docs/hessian.md``).

Notation (DESIGN.md): ``a_l = W_l z_l + b_l``, ``z_{l+1} = f_l(a_l)``, per sample ``delta_l = d loss / d a_l``
and ``G_l = d^2 loss / d a_l d a_l``, backpropagated as

    G_last = D H_loss D + diag(f''(a) * dloss/dy_hat),   G_l = D_l W_{l+1}^T G_{l+1} W_{l+1} D_l + diag(f_l''(a_l) * W_{l+1}^T delta_{l+1})

with ``D_l = diag(f_l'(a_l))``. The parameters of layer ``l`` are ``W_l`` row-major (index ``(p, q)``), then ``b_l``
(index ``p``). For ``l <= m``, with ``K = dz_m / da_l`` and ``J = da_m / da_l = W_m K`` (``K = D_l`` when ``m = l + 1``):

    d2 loss / dW_l[p,q] dW_m[j,i] = z_l[q] * ( (G_m J)[j,p] z_m[i] + delta_m[j] K[i,p] )     (l < m)
    d2 loss / dW_l[p,q] dW_l[j,i] = z_l[q] * G_l[p,j] z_l[i]                                  (l = m: G_l kron z_l z_l^T)

and a bias takes the place of a weight with ``z = 1``. Both cases share one shape: a block is
``(1/N) sum_n  [z_l ; 1] (outer) M_n`` with ``M_n[p, :]`` a row of layer ``m``'s parameters, computed for the whole
batch as one batched matmul over ``p`` (the contraction runs over the samples; there is no loop over samples).
Array code sticks to matmul, broadcasting, reshape and reductions, so that an array-API library can run it.
"""
from dataclasses import dataclass

import numpy as np
from xval import memory
from xval.checks import check_data, check_layer, numpy_finite_result

from .activations import get_activation
from .backprop import backward_pass, forward_pass
from .losses import get_loss

# Largest scratch array a block may use, unless the block itself is larger (then an eighth of it).
WORKSPACE_BYTES = 32 * 2**20


# ---- the curvature pass -----------------------------------------------------------------------
@dataclass
class Curvature:
    """Per-sample quantities of one batch: ``z[l]`` (N, n_l), ``d1[l] = f_l'(a_l)``, ``delta[l]``, and ``G[l]``
    (N, n_{l+1}, n_{l+1}) for the layers ``>= lowest`` (``None`` below)."""

    z: list
    d1: list
    delta: list
    G: list


def curvature_pass(net, X, Y, lowest=0):
    """Forward pass, backprop of ``delta`` and Hessian backprop of ``G`` down to layer ``lowest``.

    ``X``, ``Y`` must already be validated (``check_data``).
    """
    a, z = forward_pass(net, X)
    delta = backward_pass(net, a, z, Y)
    last = net.n_layers - 1
    acts = [get_activation(name) for name in net.activations]
    d1 = [act.df(a_l) for act, a_l in zip(acts, a)]
    G = [None] * net.n_layers
    loss = get_loss(net.loss)
    # Through the output activation: D H_loss D plus the curvature of f times the loss gradient.
    outer = d1[last][:, :, None] * loss.hessian(z[-1], Y) * d1[last][:, None, :]
    G[last] = outer + _diag(acts[last].d2f(a[last]) * loss.grad(z[-1], Y))
    for l in range(last - 1, lowest - 1, -1):
        w = net.weights[l + 1]
        outer = d1[l][:, :, None] * (w.T @ G[l + 1] @ w) * d1[l][:, None, :]
        G[l] = outer + _diag(acts[l].d2f(a[l]) * (delta[l + 1] @ w))
    return Curvature(z=z, d1=d1, delta=delta, G=G)


def _diag(values):
    """``(N, n)`` -> ``(N, n, n)`` diagonal matrices."""
    n = values.shape[-1]
    return np.eye(n, dtype=values.dtype) * values[:, :, None]


# The array-API name; numpy < 2 only has ``transpose``.
_permute_dims = getattr(np, "permute_dims", np.transpose)


def _view(array, shape):
    """``array`` reshaped without copying (every reshape here splits axes, which never needs a copy)."""
    try:
        return np.reshape(array, shape, copy=False)
    except TypeError:  # numpy < 2.1 has no ``copy`` argument
        return array.reshape(shape)


# ---- one block ----------------------------------------------------------------------------------
def _rows_per_chunk(net, l, m, n_samples):
    """How many output units ``p`` of layer ``l`` one scratch array ``M`` covers (bounds the workspace)."""
    n_rows, n_cols = net.layer_param_counts[l], net.layer_param_counts[m]
    per_unit = 2 * n_samples * net.layer_param_counts[m] * memory.itemsize(net.dtype)  # M and one product of its size
    budget = max(WORKSPACE_BYTES, n_rows * n_cols * memory.itemsize(net.dtype) // 8)
    return max(1, min(net.sizes[l + 1], budget // per_unit))


def _cross_factors(net, cur, l, m):
    """``(GJ^T, K^T)`` as stacks over ``p``: ``A[p, n, j] = (G_m J)[n, j, p]`` and ``Kt[p, n, i] = K[n, i, p]``.

    For ``l == m``, ``A[p, n, j] = G_l[n, p, j]`` and ``Kt`` is ``None``.
    """
    if l == m:
        return _permute_dims(cur.G[l], (1, 0, 2)), None
    # K = dz_m / da_l = D_{m-1} W_{m-1} ... W_{l+1} D_l, per sample (N, n_m, n_{l+1}).
    K = _diag(cur.d1[l])
    for k in range(l + 1, m):
        K = cur.d1[k][:, :, None] * (net.weights[k] @ K)
    GJ = cur.G[m] @ (net.weights[m] @ K)  # (N, n_{m+1}, n_{l+1})
    return _permute_dims(GJ, (2, 0, 1)), _permute_dims(K, (2, 0, 1))


def _fill_block(net, cur, l, m, out):
    """Write the ``(l, m)`` block, ``l <= m``, into ``out`` (a ``(P_l, P_m)`` array or view)."""
    n = cur.z[0].shape[0]
    n_out_l, n_in_l = net.weights[l].shape
    n_out_m, n_in_m = net.weights[m].shape
    rows_w, cols_w, cols = net.weights[l].size, net.weights[m].size, out.shape[1]
    A, Kt = _cross_factors(net, cur, l, m)
    z_l, z_m, delta_m = cur.z[l], cur.z[m], cur.delta[m]
    w_rows = _view(out[:rows_w], (n_out_l, n_in_l, cols))  # [p, q, :] is the row of W_l[p, q]
    zt = z_l.T / n  # (n_l, N): the sample weights 1/N folded in, so the contraction over samples is the batch mean
    chunk = _rows_per_chunk(net, l, m, n)
    for start in range(0, n_out_l, chunk):  # chunks of output units p, to bound the scratch array M
        p = slice(start, min(start + chunk, n_out_l))
        # M[p, n, :] = d2 loss_n / da_l[p] dtheta_m: for W_m[j, i] it is A[p, n, j] z_m[n, i]
        # (+ Kt[p, n, i] delta_m[n, j] across layers), for b_m[j] it is A[p, n, j].
        M = np.empty((p.stop - p.start, n, cols), dtype=out.dtype)
        M_w = _view(M[:, :, :cols_w], (p.stop - p.start, n, n_out_m, n_in_m))
        np.multiply(A[p][:, :, :, None], z_m[None, :, None, :], out=M_w)
        if Kt is not None:
            M_w += Kt[p][:, :, None, :] * delta_m[None, :, :, None]
        M[:, :, cols_w:] = A[p]
        # Rows of W_l[p, q] = sum_n z_l[n, q] M[p, n, :] / N; rows of b_l[p] = mean_n M[p, n, :].
        if n == 1:  # one broadcast multiply writes each entry of the block once (G kron z z^T for l == m)
            np.multiply(zt[None, :, :], M, out=w_rows[p])
        else:
            np.matmul(zt, M, out=w_rows[p])
        out[rows_w + p.start: rows_w + p.stop] = np.mean(M, axis=1)
    return out


# ---- sizes for the memory guard -----------------------------------------------------------------
def curvature_bytes(net, n_samples, lowest):
    """Peak bytes of ``curvature_pass(..., lowest)``.

    Kept: ``G_k`` ``(N, n_{k+1}, n_{k+1})`` for ``k >= lowest``, and ``a, z, delta, d1`` (``O(N sum n)``). Transient,
    at the widest layer: ``W^T G`` ``(N, n_{k+1}, n_{k+2})`` and two ``(N, n_{k+1}, n_{k+1})`` products live at once
    (``W^T G W`` and its scaling by ``D``, then the diagonal term and the sum); measured peaks are 0.5 to 0.9 of
    this estimate (``scripts/measure_peaks.py``).
    """
    n, widths = n_samples, net.sizes[1:]
    kept = sum(n * w * w for w in widths[lowest:]) + 4 * n * sum(net.sizes)
    following = widths[1:] + [widths[-1]]
    transient = max(n * w * (v + 2 * w) for w, v in list(zip(widths, following))[lowest:])
    return (kept + transient) * memory.itemsize(net.dtype)


def _block_scratch(net, l, m, n_samples):
    """Bytes of block ``(l, m)``'s own scratch: ``M`` and one product of its size, and for ``l < m`` the factors
    ``K`` (twice, while it is built) and ``G_m J`` of ``_cross_factors``."""
    item, n = memory.itemsize(net.dtype), n_samples
    scratch = _rows_per_chunk(net, l, m, n) * 2 * n * net.layer_param_counts[m]
    if m > l:
        widths = net.sizes[1:]
        scratch += n * widths[l] * (2 * net.sizes[m] + widths[m])
    return scratch * item


def block_bytes(net, l, m, n_samples):
    """``(output, workspace)`` bytes that ``hessian_block(net, X, Y, l, m)`` needs for ``n_samples`` samples:
    the ``(P_l, P_m)`` result, and the block's scratch plus the curvature pass down to layer ``min(l, m)``."""
    l, m = sorted((l, m))
    output = memory.result_bytes(net.layer_param_counts[l] * net.layer_param_counts[m], net.dtype)
    return output, _block_scratch(net, l, m, n_samples) + curvature_bytes(net, n_samples, l)


def hessian_bytes(net, n_samples):
    """``(output, workspace)`` bytes that ``hessian(net, X, Y)`` needs for ``n_samples`` samples: the ``(P, P)``
    result, the curvature pass of every layer and the largest block's scratch."""
    scratch = max(_block_scratch(net, l, m, n_samples) for l in range(net.n_layers) for m in range(l, net.n_layers))
    return memory.result_bytes(net.n_params**2, net.dtype), scratch + curvature_bytes(net, n_samples, 0)


def _guard(what, sizes):
    output, workspace = sizes
    memory.check(output + workspace, what, f"{output} bytes for the result and {workspace} bytes of working memory")


# ---- the contract -------------------------------------------------------------------------------
@numpy_finite_result
def hessian_block(net, X, Y, l, m):
    """``d2E / dtheta_l dtheta_m``, ``(P_l, P_m)`` float64: rows are layer ``l``'s parameters, columns layer ``m``'s.

    For ``l > m`` this is the transpose of the ``(m, l)`` block. Raises ``LayerIndexError`` for a bad ``l``/``m``
    and ``MemoryGuardError`` (before allocating) when the block would not fit.
    """
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    X, Y = check_data(net, X, Y)
    if l > m:
        return hessian_block(net, X, Y, m, l).T
    rows, cols = net.layer_param_counts[l], net.layer_param_counts[m]
    _guard(f"hessian_block(l={l}, m={m}) (a {rows} x {cols} {net.dtype.name} array)", block_bytes(net, l, m, X.shape[0]))
    cur = curvature_pass(net, X, Y, lowest=l)
    out = np.empty((rows, cols), dtype=net.dtype)
    return _fill_block(net, cur, l, m, out).astype(np.float64, copy=False)


@numpy_finite_result
def hessian(net, X, Y):
    """``d2E / dtheta^2``, ``(P, P)`` float64, assembled from the blocks (upper blocks computed, lower ones mirrored).

    Raises ``MemoryGuardError`` (before allocating) when the Hessian would not fit.
    """
    X, Y = check_data(net, X, Y)
    P = net.n_params
    _guard(f"hessian (a {P} x {P} {net.dtype.name} array)", hessian_bytes(net, X.shape[0]))
    cur = curvature_pass(net, X, Y, lowest=0)
    H = np.empty((P, P), dtype=net.dtype)
    slices = net.param_slices
    for l in range(net.n_layers):
        for m in range(l, net.n_layers):
            _fill_block(net, cur, l, m, H[slices[l], slices[m]])
            if m > l:
                H[slices[m], slices[l]] = H[slices[l], slices[m]].T
    return H.astype(np.float64, copy=False)
