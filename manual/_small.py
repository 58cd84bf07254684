"""Tiny MLPs on numpy, where a call is its numpy calls' overhead (0.3 us or more each) and the products are a few
hundred entries: the Hessian and its blocks of one sample, and Hessian-vector products, each step one numpy call.

**One sample's Hessian and blocks.** The math is ``_dense_hessian``'s (docs/hessian.md) with ``N = 1``: the curvature
pass backpropagates ``G_l = D_l W_{l+1}^T G_{l+1} W_{l+1} D_l + diag(f_l''(a_l) W_{l+1}^T delta_{l+1})`` as
``(n, n)`` matrices, and a strip of blocks sharing layer ``l``'s rows is ``M`` (``n_{l+1}`` rows:
``d2 loss / da_l[p] dtheta_m``) spread over ``[z_l ; 1]``. The batched path spends most of a tiny call arranging
batches, chunks and write threads around the products (a ``[4, 8, 3]`` block: 24 us, 10 of them in numpy's
products); here each step is one call on ``(1, n)`` rows and ``(n, n)`` matrices, with same-shape operands where
the batched path broadcasts (numpy's broadcasting costs 0.85 us a call where a same-shape product costs 0.3):
``D W^T G W D`` is the outer product ``d d^T`` times ``W^T G W``.

**Hessian-vector products, stacked.** The R-operator's forward pass is linear in the pair ``(z_l, R z_l)``, and
its backward pass in ``(R delta_l, delta_l)``, through the same matrix ``B_l = [[W_l, 0], [V_l, W_l]]``:
``[z | R z] B_l^T = [W z | V z + W R z]`` and ``[R delta | delta] B_l = [R delta W + delta V | delta W]``. Stacking
each pair side by side makes every layer one product each way instead of three, and the stacked rows are the two
factors of the layer's entries ``R delta^T z + delta^T R z`` as they stand (one product, no concatenation): 48 us
against 58 for width 8, depth 5. ``B`` holds 4 P entries (a zero block among them): this path is for small
networks only (``STACKED_BYTES``).

The stage functions take these paths on numpy when ``one_sample`` or ``stacked`` says so; ``tests/test_small.py``
holds them to the batched paths and to torch on every activation and loss.
"""

import numpy as np

# A one-sample Hessian or block under this many bytes (a 90 x 90 float64 Hessian) is computed here: above it the
# writes, which both paths share, outweigh what the batched path spends arranging them.
RESULT_BYTES = 2**16
# The stacked Hessian-vector product when its matrices B (4 P entries) stay under this many bytes (P = 2,048 in
# float64): beyond it a quarter of their products is the zero block, and the copies cost what the calls save.
STACKED_BYTES = 2**16


def one_sample(n_samples, lib, result_entries, dtype):
    """Whether a Hessian or block of ``result_entries`` on ``n_samples`` samples in ``lib`` is computed here."""
    return n_samples == 1 and lib.name == "numpy" and result_entries * np.dtype(dtype).itemsize < RESULT_BYTES


def stacked(net, lib):
    """Whether Hessian-vector products on ``net`` in ``lib`` take the stacked R-pass."""
    return lib.name == "numpy" and 4 * net.n_params * np.dtype(net.dtype).itemsize < STACKED_BYTES


def _passes(model, X, Y, lowest):
    """``(z, d1, delta, G)`` of one sample: activations ``z[l]`` ``(1, n_l)``, slopes ``d1[l]`` ``(1, n_{l+1})``
    (``None`` for an identity layer: a slope of 1), and from layer ``lowest`` up ``G[l]`` ``(n_{l+1}, n_{l+1})`` and
    from ``lowest + 1`` up ``delta[l]`` ``(1, n_{l+1})`` (``None`` elsewhere)."""
    dot, acts, loss = model.dot, model.acts, model.loss
    last = model.n_layers - 1
    z, d1, a = [X], [], []
    for wT, b, value_and_slope, linear in zip(model.weights_t, model.biases, model.slopes, model.linear):
        pre = dot(z[-1], wT)
        pre += b
        value, slope = (pre, None) if linear else value_and_slope(pre, np)  # slope None: f' = 1, f'' = 0
        z.append(value), d1.append(slope), a.append(pre)
    G, delta = [None] * model.n_layers, [None] * model.n_layers
    g = loss.grad(z[-1], Y, np)
    n, slope = model.sizes[-1], d1[last]
    if loss.unit_hessian:  # diag(d^2)
        G[last] = np.zeros((n, n), model.dtype)
        G[last].reshape(-1)[:: n + 1] = 1 if slope is None else (slope * slope)[0]
    else:  # H_pj d_p d_j
        G[last] = loss.hessian(z[-1], Y, np)[0] * (1 if slope is None else dot(slope.T, slope))
    if slope is not None:
        curvature = acts[last].curvature(a[last], z[-1], slope, np)
        if curvature is not None:
            G[last].reshape(-1)[:: n + 1] += (curvature * g)[0]
    if lowest < last:
        delta[last] = g if slope is None else slope * g
    for l in range(last - 1, lowest - 1, -1):
        w, slope = model.weights[l + 1], d1[l]
        G[l] = dot(dot(model.weights_t[l + 1], G[l + 1]), w)
        if slope is None:
            if l > lowest:
                delta[l] = dot(delta[l + 1], w)
            continue
        G[l] *= dot(slope.T, slope)
        curvature = acts[l].curvature(a[l], z[l + 1], slope, np)
        if curvature is None and l == lowest:
            break
        back = dot(delta[l + 1], w)  # W^T delta
        if curvature is not None:
            G[l].reshape(-1)[:: G[l].shape[0] + 1] += (curvature * back)[0]
        delta[l] = back * slope
    return z, d1, delta, G


def _strip(model, passes, l, layers):
    """``M`` ``(n_{l+1}, cols)``: ``d2 loss / da_l[p] dtheta_m`` for the layers ``m`` in ``layers`` (consecutive,
    from ``l`` or above), side by side: for ``W_m[j, i]`` it is ``A[p, j] z_m[i]`` (plus ``K[i, p] delta_m[j]``
    across layers), for ``b_m[j]`` ``A[p, j]``, with ``A = G_l`` on the diagonal block and ``(G_m J)^T`` across,
    ``K = dz_m / da_l`` and ``J = W_m K``."""
    z, d1, delta, G = passes
    counts = [model.counts[m] for m in layers]
    M = np.empty((model.sizes[l + 1], sum(counts)), model.dtype)
    K, J, col = None, None, 0
    for m in range(l, layers[-1] + 1):
        n_out, n_in = model.shapes[m]
        if m == l:
            A = G[l]
        else:
            if K is None:  # dz_{l+1} / da_l = D_l
                K = np.eye(model.sizes[l + 1], dtype=model.dtype) if d1[l] is None else np.diag(d1[l][0])
            else:  # D_{m-1} J, J = da_{m-1} / da_l from the previous layer
                K = J if d1[m - 1] is None else d1[m - 1].T * J
            J = model.dot(model.weights[m], K)
            A = model.dot(G[m], J).T
        if m not in layers:
            continue
        split, end = col + n_out * n_in, col + model.counts[m]
        weights = M[:, col:split].reshape(-1, n_out, n_in)
        np.multiply(A[:, :, None], z[m], out=weights)
        if m > l:
            weights += delta[m][0][:, None] * K.T[:, None, :]
        M[:, split:end] = A
        col = end
    return M


def _spread(model, M, z, out):
    """``out`` ``(P_l, cols)`` from a strip's ``M``: the rows of ``W_l[p, q]`` are ``z_l[q] M[p, :]``, those of
    ``b_l[p]`` are ``M[p, :]``."""
    n_out, n_in = M.shape[0], z.shape[1]
    np.multiply(z.reshape(1, n_in, 1), M[:, None, :], out=out[: n_out * n_in].reshape(n_out, n_in, -1))
    out[n_out * n_in :] = M
    return out


def block(model, X, Y, l, m):
    """``d2E / dtheta_l dtheta_m`` ``(P_l, P_m)`` of one sample."""
    low, high = sorted((l, m))
    passes = _passes(model, X, Y, low)
    M = _strip(model, passes, low, (high,))
    out = _spread(model, M, passes[0][low], np.empty((model.counts[low], model.counts[high]), model.dtype))
    return out if l <= m else out.T


def hessian(model, X, Y):
    """The ``(P, P)`` Hessian of one sample: layer ``l``'s rows from its own columns on, one strip each, and the
    columns below the diagonal block as the transpose of that strip (every entry written once)."""
    passes = _passes(model, X, Y, 0)
    P = model.n_params
    H = np.empty((P, P), model.dtype)
    layers = tuple(range(model.n_layers))
    for l, (start, _, end) in enumerate(model.bounds):
        M = _strip(model, passes, l, layers[l:])
        _spread(model, M, passes[0][l], H[start:end, start:])
        if end < P:
            H[end:, start:end] = H[start:end, end:].T
    return H


# ---- Hessian-vector products, stacked -----------------------------------------------------------------------------
def stacked_maps(model, direction):
    """``(B_l, b_l, linear_l)`` per layer along ``direction`` (``_dense_hvp.split_direction``):
    ``B_l = [[W_l, 0], [V_l, W_l]]`` ``(2 n_{l+1}, 2 n_l)`` (``[W_0 ; V_0]`` for the first layer, whose ``R z_0`` is
    0), the stacked biases ``[b_l, v_l]`` ``(1, 2 n_{l+1})``, and whether the layer's activation is the identity
    (then ``[a | R a]`` is ``[z | R z]`` as it stands and no slope multiplies anything), made once when a call is
    staged."""
    maps = []
    for l, ((V, vb), w, b) in enumerate(zip(direction, model.weights, model.biases)):
        if l == 0:
            B = np.concatenate((w, V), axis=0)
        else:
            B = np.block([[w, np.zeros_like(w)], [V, w]])
        maps.append((B, np.concatenate((b, vb), axis=1), model.linear[l]))
    return maps


def hvp(model, X, Y, maps):
    """``H v``, ``(P,)``: the forward pass and its R-pass as one product per layer on ``[z | R z]``, then backprop and
    its R-pass as one product per layer on ``[R delta | delta]``, each layer's entries written from the two stacks
    (``maps``: ``stacked_maps``)."""
    dot, acts, loss = model.dot, model.acts, model.loss
    last, n = model.n_layers - 1, X.shape[0]
    u, stacks, d1, a, Ra, z = X, [], [], [], [], [X]
    for (B, b, linear), value_and_slope, width in zip(maps, model.slopes, model.sizes[1:]):
        r = dot(u, B.T)  # [a | R a]
        r += b
        pre, Ra_l = r[:, :width], r[:, width:]
        stacks.append(u), a.append(pre), Ra.append(Ra_l)
        if linear:  # [z | R z] = [a | R a]
            d1.append(None), z.append(pre)
            u = r
            continue
        value, slope = value_and_slope(pre, np)
        d1.append(slope), z.append(value)
        u = np.concatenate((value, slope * Ra_l), axis=1)
    g = loss.grad(z[-1], Y, np)
    HRy = loss.hessian_times(z[-1], Y, u[:, model.sizes[-1] :], np)
    if maps[last][2]:
        u = np.concatenate((HRy, g), axis=1)  # [R delta | delta]
    else:
        Rdelta = d1[last] * HRy
        curvature = acts[last].curvature(a[last], z[-1], d1[last], np)
        if curvature is not None:
            Rdelta += curvature * Ra[last] * g
        u = np.concatenate((Rdelta, d1[last] * g), axis=1)
    out = np.empty((model.n_params,), model.dtype)
    for l in range(last, -1, -1):
        start, split, end = model.bounds[l]
        n_out, n_in = model.shapes[l]
        # R{dE/dW_l} = (1/N) sum_n (R delta_l^T z_l + delta_l^T R z_l): the stacks' rows, paired ([R delta_l | 0]
        # and [z_0] for layer 0, whose R z_0 is 0)
        left, right = (u[:, :n_out], stacks[0]) if l == 0 else (u.reshape(2 * n, n_out), stacks[l].reshape(2 * n, n_in))
        np.dot((left / n).T if n > 1 else left.T, right, out=out[start:split].reshape(n_out, n_in))
        out[split:end] = u[0, :n_out] if n == 1 else np.sum(u[:, :n_out], axis=0) / n
        if l == 0:
            break
        # [R delta W + delta V | delta W], then by f'(a) and the f'' term: [R delta_{l-1} | delta_{l-1}]
        u = dot(u, maps[l][0])
        if maps[l - 1][2]:
            continue
        Rback, back = u[:, :n_in], u[:, n_in:]
        curvature = acts[l - 1].curvature(a[l - 1], z[l], d1[l - 1], np)
        if curvature is not None:
            bend = curvature * Ra[l - 1]
            bend *= back
        Rback *= d1[l - 1]
        back *= d1[l - 1]
        if curvature is not None:
            Rback += bend
    return out
