"""Exact Hessian blocks of ``E = (1/N) sum_n loss_n``, written out (derivation: ``docs/hessian.md``).

Notation (DESIGN.md): ``a_l = W_l z_l + b_l``, ``z_{l+1} = f_l(a_l)``, per sample ``delta_l = d loss / d a_l``
and ``G_l = d^2 loss / d a_l d a_l``, backpropagated as

    G_last = D H_loss D + diag(f''(a) * dloss/dy_hat),   G_l = D_l W_{l+1}^T G_{l+1} W_{l+1} D_l + diag(f_l''(a_l) * W_{l+1}^T delta_{l+1})

with ``D_l = diag(f_l'(a_l))``. The parameters of layer ``l`` are ``W_l`` row-major (index ``(p, q)``), then ``b_l``
(index ``p``). For ``l <= m``, with ``K = dz_m / da_l`` and ``J = da_m / da_l = W_m K`` (``K = D_l`` when
``m = l + 1``):

    d2 loss / dW_l[p,q] dW_m[j,i] = z_l[q] * ( (G_m J)[j,p] z_m[i] + delta_m[j] K[i,p] )     (l < m)
    d2 loss / dW_l[p,q] dW_l[j,i] = z_l[q] * G_l[p,j] z_l[i]                                  (l = m: G_l kron z_l z_l^T)

and a bias takes the place of a weight with ``z = 1``. Both cases share one shape: a block is
``(1/N) sum_n  [z_l ; 1] (outer) M_n`` with ``M_n[p, :]`` a row of layer ``m``'s parameters, computed for the whole
batch as one batched matmul over ``p`` (the contraction runs over the samples; there is no loop over samples).
Array code sticks to the array-API standard (matmul, broadcasting, reshape, reductions), and every entry of a
result is written once (``Library.write``). The blocks sharing layer ``l``'s rows form a strip, written by one
product per row over all its columns; the full Hessian computes each layer's strip from the diagonal block on and
copies the columns below it from that strip's transpose (one write per entry). For one sample on numpy it writes
whole rows instead (``_one_sample_hessian``): left of the diagonal block the same products as the strips above it,
from every strip's ``M``, so nothing is read back.
"""

from dataclasses import dataclass, replace

import numpy as np

from xval import memory
from xval.checks import check_data, check_layer

from . import _small, arrays
from ._dense_first_order import backward_values, forward_values
from ._prepared import prepare

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
    xp, lib = model.xp, model.lib
    z, d1, a = forward_values(model, X, keep_pre=True)
    delta = backward_values(model, z, d1, Y)
    last = model.n_layers - 1
    G = [None] * model.n_layers
    loss, acts = model.loss, model.acts
    # Through the output activation: D H_loss D plus the curvature of f times the loss gradient (diagonal).
    curvature = acts[last].curvature(a[last], z[-1], d1[last], xp)
    bend = None if curvature is None else curvature * loss.grad(z[-1], Y, xp)
    if loss.unit_hessian:  # D I D is diagonal too
        G[last] = lib.diag(d1[last] * d1[last] if bend is None else d1[last] * d1[last] + bend)
    else:
        G[last] = d1[last][:, :, None] * loss.hessian(z[-1], Y, xp) * d1[last][:, None, :]
        if bend is not None:
            G[last] = lib.add_diagonal(G[last], bend)
    for l in range(last - 1, lowest - 1, -1):
        w = model.weights[l + 1]
        G[l] = d1[l][:, :, None] * (model.weights_t[l + 1] @ G[l + 1] @ w) * d1[l][:, None, :]
        curvature = acts[l].curvature(a[l], z[l + 1], d1[l], xp)
        if curvature is not None:
            G[l] = lib.add_diagonal(G[l], curvature * (delta[l + 1] @ w))
    return Curvature(z=z, d1=d1, delta=delta, G=G)


# ---- a strip of blocks ------------------------------------------------------------------------
@dataclass(frozen=True)
class Strip:
    """The blocks ``(l, m)`` for ``m`` in ``layers`` (consecutive, ``l <= m``), side by side: ``cols`` columns in all,
    computed ``chunk`` output units of layer ``l`` at a time. Fixed by the network and the batch size, so a staged
    call works it out once. ``per_unit`` is the scratch per unit of a chunk, in entries: ``M`` (``N x cols``) and,
    for a block across layers, the two factors packed for its product (``N x 2(n_m + n_{m+1})``)."""

    l: int
    layers: tuple
    cols: int
    chunk: int
    per_unit: int


def strip(net, l, layers, n_samples):
    """The ``Strip`` of layer ``l``'s rows against the columns of ``layers``; its chunk bounds the scratch to
    ``WORKSPACE_BYTES`` unless the strip itself is larger (then an eighth of it)."""
    counts, item = net.layer_param_counts, memory.itemsize(net.dtype)
    cols = sum(counts[m] for m in layers)
    packed = max((2 * (net.sizes[m] + net.sizes[m + 1]) for m in layers if m > l), default=0)
    per_unit = n_samples * (cols + packed)
    budget = max(WORKSPACE_BYTES, counts[l] * cols * item // 8)
    chunk = max(1, min(net.sizes[l + 1], budget // (per_unit * item)))
    return Strip(l, tuple(layers), cols, chunk, per_unit)


def _strip_factors(model, cur, l, layers):
    """``(m, A, Kt)`` for each ``m`` in ``layers`` (consecutive, from ``l`` or above): ``(GJ^T, K^T)`` as stacks over
    ``p``, ``A[p, n, j] = (G_m J)[n, j, p]`` and ``Kt[p, n, i] = K[n, i, p]``; for ``m == l``,
    ``A[p, n, j] = G_l[n, p, j]`` and ``Kt`` is ``None``.

    ``K = dz_m / da_l = D_{m-1} W_{m-1} ... W_{l+1} D_l`` (per sample, ``(N, n_m, n_{l+1})``) grows one layer per
    ``m``: ``W_m K`` is ``J`` for this ``m`` and, scaled by ``D_m``, the next ``K``.
    """
    xp, out = model.xp, []
    K = model.lib.diag(cur.d1[l]) if layers[-1] > l else None
    for m in range(l, layers[-1] + 1):
        if m > l:
            J = model.weights[m] @ K  # (N, n_{m+1}, n_{l+1})
            if m in layers:
                out.append((m, xp.permute_dims(cur.G[m] @ J, (2, 0, 1)), xp.permute_dims(K, (2, 0, 1))))
            K = cur.d1[m][:, :, None] * J
        elif m in layers:
            out.append((m, xp.permute_dims(cur.G[l], (1, 0, 2)), None))
    return out


def _strip_rows(model, cur, part, factors, start, stop):
    """``M[p, n, :] = d2 loss_n / da_l[p] dtheta_m`` for the units ``start:stop`` of layer ``l``, block after block
    over the strip's columns: for ``W_m[j, i]`` it is ``A[p, n, j] z_m[n, i]`` (``+ Kt[p, n, i] delta_m[n, j]`` across
    layers), for ``b_m[j]`` it is ``A[p, n, j]`` (``factors``: ``_strip_factors``)."""
    lib, n = model.lib, cur.z[0].shape[0]
    M = lib.empty((stop - start, n, part.cols), model.dtype)
    col = 0
    for m, A, Kt in factors:
        split, end = col + model.bounds[m][1] - model.bounds[m][0], col + model.counts[m]
        weights_part = (slice(None), slice(None), slice(col, split))
        if Kt is None:
            lib.write(M, weights_part, "multiply", A[start:stop, :, :, None], cur.z[m][None, :, None, :])
        else:
            # A z_m + delta_m Kt as one product per (p, n) with an inner dimension of 2:
            # [A[p, n, :], delta_m[n, :]] (J x 2) @ [z_m[n, :]; Kt[p, n, :]] (2 x I), written once.
            left = lib.empty((stop - start, *A.shape[1:], 2), model.dtype)
            left[..., 0], left[..., 1] = A[start:stop, ...], cur.delta[m][None, ...]
            right = lib.empty((stop - start, n, 2, Kt.shape[-1]), model.dtype)
            right[..., 0, :], right[..., 1, :] = cur.z[m][None, ...], Kt[start:stop, ...]
            lib.write(M, weights_part, "matmul", left, right)
        M[:, :, split:end] = A[start:stop, ...]
        col = end
    return M


def _fill_strip(model, cur, part, out, at=(0, 0)):
    """Write the blocks of ``part`` (a ``Strip``) into ``out`` at row/column offsets ``at``.

    The blocks of one strip share their rows, so each output row is written by one product over all of the strip's
    columns: long rows write at about three times the rate of block-wide ones (measured: numpy's broadcast products
    and copies pay per row).
    """
    xp, lib, l = model.xp, model.lib, part.l
    n = cur.z[0].shape[0]
    n_out_l, n_in_l = model.shapes[l]
    rows_w = n_out_l * n_in_l
    factors = _strip_factors(model, cur, l, part.layers)
    z_scaled = cur.z[l] / n if n > 1 else cur.z[l]  # the sample weights 1/N folded in: the sum over samples is the mean
    op, zt = ("multiply", xp.reshape(z_scaled, (1, n_in_l, 1))) if n == 1 else ("matmul", z_scaled.T)
    r0, c0 = at
    for start in range(0, n_out_l, part.chunk):  # chunks of output units p, to bound the scratch array M
        stop = min(start + part.chunk, n_out_l)
        M = _strip_rows(model, cur, part, factors, start, stop)
        # Rows of W_l[p, q] = sum_n z_l[n, q] M[p, n, :] / N; rows of b_l[p] = mean_n M[p, n, :].
        rows = slice(r0 + start * n_in_l, r0 + stop * n_in_l)
        lib.write(out, (rows, slice(c0, c0 + part.cols)), op, zt, M)  # (p, q, :)
        bias_rows = slice(r0 + rows_w + start, r0 + rows_w + stop)
        out[bias_rows, c0 : c0 + part.cols] = M[:, 0, :] if n == 1 else xp.mean(M, axis=1)
    return out


# ---- the full Hessian of one sample on numpy, by rows --------------------------------------------------------------
# Rows pay once the columns left of the diagonal hold this many entries per pair of layers: each pair costs a few
# numpy calls per thread. Measured (one sample, two threads, rows against strips and copies): 816 parameters in 3
# layers, 74K entries a pair, 0.90 against 1.21 ms; 630 in 3, 44K, 0.79 against 0.58 ms; 2,176 in 8, 74K, 7.9
# against 9.6 ms; 2,088 in 29 layers, 5K, 28.6 against 18.2 ms.
ROWS_PAIR_ENTRIES = 2**16


def one_sample_rows(net, n_samples, lib_name):
    """Whether ``hessian`` writes whole rows from every strip's ``M`` (``_one_sample_hessian``): one sample on numpy,
    when the columns left of the diagonal hold ``ROWS_PAIR_ENTRIES`` entries or more per pair of layers, and those
    ``M`` (``sum_l n_{l+1} x cols_l`` entries, the Hessian over ``n_l``) fit the strips' scratch budget."""
    if n_samples != 1 or lib_name != "numpy":
        return False
    counts, pairs = net.layer_param_counts, net.n_layers * (net.n_layers - 1) // 2
    lower = (net.n_params**2 - sum(c * c for c in counts)) // 2
    if not pairs or lower < ROWS_PAIR_ENTRIES * pairs:
        return False
    item = memory.itemsize(net.dtype)
    return _rows_scratch(net) * item <= max(WORKSPACE_BYTES, net.n_params**2 * item // 8)


def _rows_scratch(net):
    """Entries of every strip's ``M`` of one sample."""
    counts = net.layer_param_counts
    return sum(net.sizes[l + 1] * sum(counts[l:]) for l in range(net.n_layers))


def _one_sample_hessian(model, cur, strips):
    """The ``(P, P)`` Hessian of one sample on numpy, row band by row band: with every strip's ``M`` (``M_l``, one
    per layer) at hand, the row ``(l, p, q)`` is ``z_m[i] M_m[j, (l, p, q)]`` at the columns ``(m, j, i)`` of the
    layers ``m < l`` (the transpose of strip ``m``, the same products) and ``z_l[q] M_l[p, :]`` from layer ``l`` on.
    One split over the threads, each taking its share of every layer's units, writes every entry once in row order:
    no transposed copy reads the upper triangle back (one sample, P = 3000: 12.7 against 15.0-15.6 ms for strips and
    copies, fresh outputs, 2 threads)."""
    P = model.n_params
    H = np.empty((P, P), dtype=model.dtype)
    rows = [
        _strip_rows(model, cur, part, _strip_factors(model, cur, part.l, part.layers), 0, model.shapes[part.l][0])[
            :, 0, :
        ]
        for part in strips
    ]
    z = [cur.z[l][0] for l in range(model.n_layers)]
    units = max(n_out for n_out, _ in model.shapes)

    def write(k0, k1):  # the units [n_out k0 / units, n_out k1 / units) of every layer
        for l, (start, _, _end) in enumerate(model.bounds):
            n_out, n_in = model.shapes[l]
            p0, p1 = n_out * k0 // units, n_out * k1 // units
            if p1 <= p0:
                continue
            weight_rows = slice(start + p0 * n_in, start + p1 * n_in)
            bias_rows = slice(start + n_out * n_in + p0, start + n_out * n_in + p1)
            for m in range(l):  # left of the diagonal block: z_m[i] M_m[j, c] (einsum: short rows, in place)
                m_start, m_split, m_end = model.bounds[m]
                c = start - m_start
                for target, cols in (
                    (weight_rows, slice(c + p0 * n_in, c + p1 * n_in)),
                    (bias_rows, slice(c + n_out * n_in + p0, c + n_out * n_in + p1)),
                ):
                    source = rows[m][:, cols]
                    np.einsum("jc,i->cji", source, z[m], out=H[target, m_start:m_split].reshape(-1, *model.shapes[m]))
                    H[target, m_split:m_end] = source.T
            np.multiply(
                z[l][None, :, None], rows[l][p0:p1, None, :], out=H[weight_rows, start:].reshape(p1 - p0, n_in, -1)
            )
            H[bias_rows, start:] = rows[l][p0:p1]

    with arrays.row_buffer(H[:, model.bounds[-1][0] :]):  # rows as short as the last strip's
        arrays.split(units, write, H.nbytes)
    return H


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


def _strip_scratch(net, part, n_samples):
    """Bytes of a strip's own scratch: a chunk's ``M`` and products (``Strip.per_unit``), and for every ``m > l`` the
    factors ``K`` and ``G_m J`` of ``_strip_factors`` (all kept while the strip is written) plus ``K`` once more while
    it is built."""
    n, widths, l = n_samples, net.sizes[1:], part.l
    scratch = part.chunk * part.per_unit
    cross = [n * widths[l] * (net.sizes[m] + widths[m]) for m in part.layers if m > l]
    scratch += sum(cross) + max((n * widths[l] * net.sizes[m] for m in part.layers if m > l), default=0)
    return scratch * memory.itemsize(net.dtype)


def hessian_strips(net, n_samples):
    """The full Hessian's strips: layer ``l``'s rows against the columns of layers ``l`` to the last."""
    return tuple(strip(net, l, range(l, net.n_layers), n_samples) for l in range(net.n_layers))


def block_bytes(net, l, m, n_samples):
    """``(output, workspace)`` bytes that ``hessian_block(net, X, Y, l, m)`` needs for ``n_samples`` samples:
    the ``(P_l, P_m)`` result, and the block's scratch (numpy's iterator buffers included) plus the curvature pass
    down to layer ``min(l, m)``."""
    l, m = sorted((l, m))
    output = memory.result_bytes(net.layer_param_counts[l] * net.layer_param_counts[m], net.dtype)
    scratch = _strip_scratch(net, strip(net, l, (m,), n_samples), n_samples) + arrays.iterator_buffer_bytes(output)
    return output, scratch + curvature_bytes(net, n_samples, l)


def hessian_bytes(net, n_samples, lib_name="numpy"):
    """``(output, workspace)`` bytes that ``hessian(net, X, Y)`` needs for ``n_samples`` samples on the array library
    ``lib_name``: the ``(P, P)`` result, the curvature pass of every layer and the largest strip's scratch (by rows,
    ``one_sample_rows``: every strip's ``M`` kept, and the largest strip's scratch with all its units at once)."""
    strips = hessian_strips(net, n_samples)
    if one_sample_rows(net, n_samples, lib_name):
        whole = [replace(part, chunk=net.sizes[part.l + 1]) for part in strips]
        scratch = _rows_scratch(net) * memory.itemsize(net.dtype) + max(_strip_scratch(net, part, 1) for part in whole)
    else:
        scratch = max(_strip_scratch(net, part, n_samples) for part in strips)
    output = memory.result_bytes(net.n_params**2, net.dtype)
    buffers = arrays.iterator_buffer_bytes(output) if lib_name == "numpy" else 0
    return output, scratch + buffers + curvature_bytes(net, n_samples, 0)


# ---- the contract -------------------------------------------------------------------------------
def _guard(what, sizes, lib):
    output, workspace = sizes
    memory.check(
        output + workspace,
        what,
        f"{output} bytes for the result and {workspace} bytes of working memory",
        available=lib.free_bytes(),
    )


def _curvature_before(model, X, Y, lowest, nbytes):
    """``curvature_pass``, with BLAS on one thread when the ``nbytes`` result that follows is written by broadcast
    products split over threads and the pass is small (one sample: ``manual.arrays.quiet_blas``; with more, matmul
    writes the result on BLAS's threads)."""
    widths = model.sizes[lowest + 1 :]
    products = 4 * X.shape[0] * sum(w * v * (w + v) for w, v in zip(widths, widths[1:] + widths[-1:]))  # W^T G W
    with arrays.quiet_blas(model.lib, nbytes if X.shape[0] == 1 else 0, products):
        return curvature_pass(model, X, Y, lowest=lowest)


def _block_values(model, X, Y, part):
    rows = model.counts[part.l]
    cur = _curvature_before(model, X, Y, part.l, rows * part.cols * model.dtype.itemsize)
    out = model.lib.empty((rows, part.cols), model.dtype)
    return _fill_strip(model, cur, part, out)


def _hessian_values(model, X, Y, strips, by_rows):
    """The ``(P, P)`` Hessian, strip by strip: layer ``l``'s rows from its own columns on are computed (one product
    per row chunk over all those columns), and its columns below the diagonal block are the transpose of that
    (one transposed copy per layer, whose source and target never overlap); every entry written once. ``by_rows``
    (``one_sample_rows``): whole rows instead, from every strip's ``M`` (``_one_sample_hessian``)."""
    P = model.n_params
    cur = _curvature_before(model, X, Y, 0, P * P * model.dtype.itemsize)
    if by_rows:
        return _one_sample_hessian(model, cur, strips)
    H = model.lib.empty((P, P), model.dtype)
    for part, (start, _, end) in zip(strips, model.bounds):
        _fill_strip(model, cur, part, H, at=(start, start))
        if end < P:
            model.lib.assign(H, (slice(end, None), slice(start, end)), H[start:end, end:].T)
    return H


def stage_hessian_block(net, X, Y, l, m):
    """``hessian_block`` staged: ``(P_l, P_m)`` as an array of the selected library (checks and the memory guard
    run here, before any work)."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    X, Y = check_data(net, X, Y)
    low, high = sorted((l, m))
    rows, cols = net.layer_param_counts[l], net.layer_param_counts[m]
    _guard(
        f"hessian_block(l={l}, m={m}) (a {rows} x {cols} {net.dtype.name} array)",
        block_bytes(net, l, m, X.shape[0]),
        arrays.library(),
    )  # before the network goes to the device
    model, X, Y = prepare(net).data(X, Y)
    if _small.one_sample(X.shape[0], model.lib, rows * cols, net.dtype):
        return model.staged(lambda: _small.block(model, X, Y, l, m))
    part = strip(net, low, (high,), X.shape[0])
    if l > m:  # the transpose of the (m, l) block
        return model.staged(lambda: _block_values(model, X, Y, part).T)
    return model.staged(lambda: _block_values(model, X, Y, part))


def _hessian_estimate(net, n_samples, **args):
    return sum(hessian_bytes(net, n_samples, arrays.library().name))


def _block_estimate(net, n_samples, l, m):
    return sum(block_bytes(net, l, m, n_samples))


def stage_hessian(net, X, Y):
    """``hessian`` staged: ``(P, P)`` as an array of the selected library."""
    X, Y = check_data(net, X, Y)
    P, lib = net.n_params, arrays.library()
    # The guard runs before the network and the data are copied to the library's device.
    _guard(f"hessian (a {P} x {P} {net.dtype.name} array)", hessian_bytes(net, X.shape[0], lib.name), lib)
    model, X, Y = prepare(net).data(X, Y)
    if _small.one_sample(X.shape[0], model.lib, P * P, net.dtype):
        return model.staged(lambda: _small.hessian(model, X, Y))
    strips, by_rows = hessian_strips(net, X.shape[0]), one_sample_rows(net, X.shape[0], lib.name)
    return model.staged(lambda: _hessian_values(model, X, Y, strips, by_rows))


stage_hessian.estimate, stage_hessian_block.estimate = _hessian_estimate, _block_estimate
