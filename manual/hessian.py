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
Array code sticks to the array-API standard (matmul, broadcasting, reshape, reductions), and every entry of a
result is written once (``Library.write``); the full Hessian computes the upper blocks and copies each lower twin
from its upper block right after computing it (one write per entry; the copy is faster than computing it again).
"""
from dataclasses import dataclass

from xval import memory
from xval.checks import check_data, check_layer

from .arrays import finite_result, to_numpy
from .backprop import backward_values, forward_values
from .staged import prepare

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


def curvature_pass(model, X, Y, lowest=0):
    """Forward pass, backprop of ``delta`` and Hessian backprop of ``G`` down to layer ``lowest`` (arrays of the
    model's library; ``X``, ``Y`` validated and placed there)."""
    xp = model.xp
    z, d1, a = forward_values(model, X, keep_pre=True)
    delta = backward_values(model, z, d1, Y)
    last = model.n_layers - 1
    G = [None] * model.n_layers
    loss, acts = model.loss, model.acts
    # Through the output activation: D H_loss D plus the curvature of f times the loss gradient.
    outer = d1[last][:, :, None] * loss.hessian(z[-1], Y, xp) * d1[last][:, None, :]
    G[last] = outer + _diag(xp, acts[last].d2f(a[last], xp) * loss.grad(z[-1], Y, xp))
    for l in range(last - 1, lowest - 1, -1):
        w = model.weights[l + 1]
        outer = d1[l][:, :, None] * (model.weights_t[l + 1] @ G[l + 1] @ w) * d1[l][:, None, :]
        G[l] = outer + _diag(xp, acts[l].d2f(a[l], xp) * (delta[l + 1] @ w))
    return Curvature(z=z, d1=d1, delta=delta, G=G)


def _diag(xp, values):
    """``(N, n)`` -> ``(N, n, n)`` diagonal matrices."""
    n = values.shape[-1]
    return xp.eye(n, dtype=values.dtype, device=values.device) * values[:, :, None]


# ---- one block ----------------------------------------------------------------------------------
def _rows_per_chunk(net, l, m, n_samples):
    """How many output units ``p`` of layer ``l`` one scratch array ``M`` covers (bounds the workspace)."""
    n_rows, n_cols = net.layer_param_counts[l], net.layer_param_counts[m]
    per_unit = 2 * n_samples * net.layer_param_counts[m] * memory.itemsize(net.dtype)  # M and one product of its size
    budget = max(WORKSPACE_BYTES, n_rows * n_cols * memory.itemsize(net.dtype) // 8)
    return max(1, min(net.sizes[l + 1], budget // per_unit))


def _cross_factors(model, cur, l, m):
    """``(GJ^T, K^T)`` as stacks over ``p``: ``A[p, n, j] = (G_m J)[n, j, p]`` and ``Kt[p, n, i] = K[n, i, p]``.

    For ``l == m``, ``A[p, n, j] = G_l[n, p, j]`` and ``Kt`` is ``None``.
    """
    xp = model.xp
    if l == m:
        return xp.permute_dims(cur.G[l], (1, 0, 2)), None
    # K = dz_m / da_l = D_{m-1} W_{m-1} ... W_{l+1} D_l, per sample (N, n_m, n_{l+1}).
    K = _diag(xp, cur.d1[l])
    for k in range(l + 1, m):
        K = cur.d1[k][:, :, None] * (model.weights[k] @ K)
    GJ = cur.G[m] @ (model.weights[m] @ K)  # (N, n_{m+1}, n_{l+1})
    return xp.permute_dims(GJ, (2, 0, 1)), xp.permute_dims(K, (2, 0, 1))


def _fill_block(net, model, cur, l, m, out, at=(0, 0)):
    """Write the ``(l, m)`` block, ``l <= m``, into ``out`` at row/column offsets ``at``."""
    xp, lib = model.xp, model.lib
    n = cur.z[0].shape[0]
    n_out_l, n_in_l = model.shapes[l]
    rows_w, cols_w, cols = n_out_l * n_in_l, model.bounds[m][1] - model.bounds[m][0], model.counts[m]
    A, Kt = _cross_factors(model, cur, l, m)
    z_l, z_m, delta_m = cur.z[l], cur.z[m], cur.delta[m]
    z_scaled = z_l / n if n > 1 else z_l  # the sample weights 1/N folded in: the contraction over samples is the mean
    r0, c0 = at
    chunk = _rows_per_chunk(net, l, m, n)
    for start in range(0, n_out_l, chunk):  # chunks of output units p, to bound the scratch array M
        stop = min(start + chunk, n_out_l)
        # M[p, n, :] = d2 loss_n / da_l[p] dtheta_m: for W_m[j, i] it is A[p, n, j] z_m[n, i]
        # (+ Kt[p, n, i] delta_m[n, j] across layers), for b_m[j] it is A[p, n, j].
        M = lib.empty((stop - start, n, cols), net.dtype)
        weights_part = (slice(None), slice(None), slice(0, cols_w))
        lib.write(M, weights_part, "multiply", A[start:stop, :, :, None], z_m[None, :, None, :])
        if Kt is not None:
            lib.add_into(M, weights_part, Kt[start:stop, :, None, :] * delta_m[None, :, :, None])
        M[:, :, cols_w:] = A[start:stop, ...]
        # Rows of W_l[p, q] = sum_n z_l[n, q] M[p, n, :] / N; rows of b_l[p] = mean_n M[p, n, :].
        rows = slice(r0 + start * n_in_l, r0 + stop * n_in_l)
        bias_rows = slice(r0 + rows_w + start, r0 + rows_w + stop)
        op, zt = ("multiply", xp.reshape(z_scaled, (1, n_in_l, 1))) if n == 1 else ("matmul", z_scaled.T)
        lib.write(out, (rows, slice(c0, c0 + cols)), op, zt, M)  # (p, q, :)
        bias = xp.mean(M, axis=1)
        out[bias_rows, c0:c0 + cols] = bias
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



# ---- the contract -------------------------------------------------------------------------------
def _guard(what, sizes, lib):
    output, workspace = sizes
    memory.check(output + workspace, what, f"{output} bytes for the result and {workspace} bytes of working memory",
                 available=lib.free_bytes())


def _block_values(net, model, X, Y, l, m):
    cur = curvature_pass(model, X, Y, lowest=l)
    out = model.lib.empty((model.counts[l], model.counts[m]), net.dtype)
    return _fill_block(net, model, cur, l, m, out)


def _hessian_values(net, model, X, Y):
    cur = curvature_pass(model, X, Y, lowest=0)
    P = model.n_params
    H = model.lib.empty((P, P), net.dtype)
    spans = [slice(start, end) for start, _, end in model.bounds]
    for l in range(model.n_layers):
        for m in range(l, model.n_layers):
            _fill_block(net, model, cur, l, m, H, at=(spans[l].start, spans[m].start))
            if m > l:
                # The lower twin, copied while the block is still in cache: a transposed copy writes at about twice
                # the rate of the broadcast products that compute a block (measured), so this beats computing it.
                H[spans[m], spans[l]] = H[spans[l], spans[m]].T
    return H


def stage_hessian_block(net, X, Y, l, m):
    """``hessian_block`` staged: ``(P_l, P_m)`` as an array of the selected library (checks and the memory guard
    run here, before any work)."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    X, Y = check_data(net, X, Y)
    model, X, Y = prepare(net).data(X, Y)
    low, high = sorted((l, m))
    rows, cols = net.layer_param_counts[l], net.layer_param_counts[m]
    _guard(f"hessian_block(l={l}, m={m}) (a {rows} x {cols} {net.dtype.name} array)",
           block_bytes(net, l, m, X.shape[0]), model.lib)
    if l > m:  # the transpose of the (m, l) block
        return model.staged(lambda: _block_values(net, model, X, Y, low, high).T)
    return model.staged(lambda: _block_values(net, model, X, Y, low, high))


@finite_result
def hessian_block(net, X, Y, l, m):
    """``d2E / dtheta_l dtheta_m``, ``(P_l, P_m)`` float64: rows are layer ``l``'s parameters, columns layer ``m``'s.

    For ``l > m`` this is the transpose of the ``(m, l)`` block. Raises ``LayerIndexError`` for a bad ``l``/``m``
    and ``MemoryGuardError`` (before allocating) when the block would not fit.
    """
    return to_numpy(stage_hessian_block(net, X, Y, l, m)())


def stage_hessian(net, X, Y):
    """``hessian`` staged: ``(P, P)`` as an array of the selected library."""
    X, Y = check_data(net, X, Y)
    model, X, Y = prepare(net).data(X, Y)
    P = net.n_params
    _guard(f"hessian (a {P} x {P} {net.dtype.name} array)", hessian_bytes(net, X.shape[0]), model.lib)
    return model.staged(lambda: _hessian_values(net, model, X, Y))


@finite_result
def hessian(net, X, Y):
    """``d2E / dtheta^2``, ``(P, P)`` float64, assembled from the blocks: upper blocks computed, each lower one copied
    from its twin while that is in cache (every entry written once).

    Raises ``MemoryGuardError`` (before allocating) when the Hessian would not fit.
    """
    return to_numpy(stage_hessian(net, X, Y)())
