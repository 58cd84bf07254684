"""Exact Hessian-vector products by Pearlmutter's R-operator: O(|W|), the Hessian is never formed.

``R{x}`` is the derivative of ``x`` along the direction ``v = (V_l, v_l)`` (a weight matrix and a bias per
layer) at the current parameters. Applying ``R`` to the forward pass and to backprop (docs/hessian.md):

    R a_l = V_l z_l + W_l R z_l + v_l,       R z_{l+1} = f_l'(a_l) R a_l,        R z_0 = 0
    R delta_last = f''(a) R a * g + f'(a) * (H_loss (f'(a) R a))                  (g = dloss/dy_hat)
    R delta_l = f_l''(a_l) R a_l * (W_{l+1}^T delta_{l+1}) + f_l'(a_l) * (V_{l+1}^T delta_{l+1} + W_{l+1}^T R delta_{l+1})

and ``H v = R{grad E}`` is, per layer, ``(1/N) sum_n (R delta_l z_l^T + delta_l R z_l^T)`` and
``(1/N) sum_n R delta_l``.
"""

from xval.checks import check_data, check_direction

from . import _small
from ._dense_first_order import forward_values
from ._prepared import guard, prepare


def split_direction(model, v):
    """``(V_l, v_l)`` per layer: ``v``'s entries shaped like ``W_l`` and like the model's bias rows ``(1, n_{l+1})``
    (views of ``v``, made once when a call is staged)."""
    xp = model.xp
    return [
        (xp.reshape(v[start:split], shape), xp.reshape(v[split:end], (1, -1)))
        for (start, split, end), shape in zip(model.bounds, model.shapes)
    ]


def _forward_r_pass(model, z, d1, direction):
    """``(R a_l, R z_l)`` per layer along ``direction`` (``R z_0 = 0``, so layer 0 has no ``W R z`` term)."""
    dot = model.dot
    Ra, Rz = [], [None]
    for l, ((V, vb), wT) in enumerate(zip(direction, model.weights_t)):
        Ra_l = dot(z[l], V.T)
        if l > 0:
            Ra_l += dot(Rz[l], wT)
        Ra_l += vb
        Ra.append(Ra_l)
        Rz.append(d1[l] * Ra_l)
    return Ra, Rz


def _write_layer(model, out, l, left, right, bias):
    """Layer ``l``'s entries of a ``(P,)`` result: ``(1/N) left^T right`` for the weights (``left`` ``(K, n_{l+1})``,
    ``right`` ``(K, n_l)``, ``K`` rows stacked over samples and terms) and ``(1/N) sum_n bias_n`` for the biases."""
    start, split, end = model.bounds[l]
    n = bias.shape[0]
    model.lib.product(out, slice(start, split), model.shapes[l], (left / n).T if n > 1 else left.T, right)
    out[split:end] = bias[0, ...] if n == 1 else model.xp.sum(bias, axis=0) / n


def hvp_values(model, X, Y, direction):
    """``H v``, ``(P,)`` in the model's library, written once: the forward pass and its R-pass along ``direction =
    split_direction(model, v)`` layer by layer, then backprop and its R-pass together from the last layer, each
    layer's entries written as soon as its ``delta`` and ``R delta`` are known."""
    xp, dot, loss, acts = model.xp, model.dot, model.loss, model.acts
    last = model.n_layers - 1
    z, d1, a, Ra, Rz = [X], [], [], [], [None]
    for l, (wT, b, (V, vb), value_and_slope) in enumerate(zip(model.weights_t, model.biases, direction, model.slopes)):
        pre = dot(z[l], wT)
        pre += b
        value, slope = value_and_slope(pre, xp)
        Ra_l = dot(z[l], V.T)
        if l:
            Ra_l += dot(Rz[l], wT)
        Ra_l += vb
        z.append(value), d1.append(slope), a.append(pre), Ra.append(Ra_l), Rz.append(slope * Ra_l)
    g = loss.grad(z[-1], Y, xp)
    delta = d1[last] * g
    Rdelta = d1[last] * loss.hessian_times(z[-1], Y, Rz[-1], xp)
    # f'' terms only where f'' is not identically 0 (identity, relu).
    curvature = acts[last].curvature(a[last], z[-1], d1[last], xp)
    if curvature is not None:
        Rdelta += curvature * Ra[last] * g
    out = model.lib.empty((model.n_params,), model.dtype)
    for l in range(last, 0, -1):
        # R{dE/dW_l} = (1/N) (Rdelta_l^T z_l + delta_l^T Rz_l): both terms as one product over 2N stacked rows.
        _write_layer(model, out, l, xp.concat((Rdelta, delta), axis=0), xp.concat((z[l], Rz[l]), axis=0), Rdelta)
        # R delta_{l-1} = f'(a) (V^T delta + W^T R delta) + f''(a) R a (W^T delta);  delta_{l-1} = f'(a) W^T delta
        w, V = model.weights[l], direction[l][0]
        back = dot(delta, w)
        Rback = dot(delta, V)
        Rback += dot(Rdelta, w)
        Rback *= d1[l - 1]
        curvature = acts[l - 1].curvature(a[l - 1], z[l], d1[l - 1], xp)
        if curvature is not None:  # f'' R a (W^T delta), in a product of its own (curvature is the activation's)
            bend = curvature * Ra[l - 1]
            bend *= back
            Rback += bend
        back *= d1[l - 1]
        delta, Rdelta = back, Rback
    _write_layer(model, out, 0, Rdelta, z[0], Rdelta)  # R z_0 = 0: one term
    return out


def ggnvp_values(model, X, Y, direction):
    """``G v = (1/N) sum_n J_n^T Lambda_n J_n v``, ``(P,)``: the forward R-pass gives ``J v`` (``R y``), and one
    backprop of ``Lambda R y`` gives ``J^T`` of it: the R-operator without its second-order terms (no ``f''``, no
    ``V^T delta``, no ``delta R z^T``), one forward and two passes' work, never forming ``G``."""
    last = model.n_layers - 1
    z, d1, _ = forward_values(model, X)
    _, Rz = _forward_r_pass(model, z, d1, direction)
    back = d1[last] * model.loss.hessian_times(z[-1], Y, Rz[-1], model.xp)  # d/da_last of <Lambda J v, y>
    out = model.lib.empty((model.n_params,), model.dtype)
    for l in range(last, -1, -1):
        _write_layer(model, out, l, back, z[l], back)
        if l:
            back = model.dot(back, model.weights[l])
            back *= d1[l - 1]
    return out


def _prepared(net, X, Y, v, quantity="hvp"):
    X, Y = check_data(net, X, Y)
    v = check_direction(net, v)
    guard(net, quantity, X.shape[0])
    model, X, Y = prepare(net).data(X, Y)
    return model, X, Y, split_direction(model, model.asarray(v))


def stage_hvp(net, X, Y, v):
    """``hvp`` staged: ``(P,)`` as an array of the selected library (small networks on numpy: ``_small.hvp``)."""
    model, X, Y, direction = _prepared(net, X, Y, v)
    if _small.stacked(net, model.lib):
        maps = _small.stacked_maps(model, direction)
        return model.staged(lambda: _small.hvp(model, X, Y, maps))
    return model.staged(lambda: hvp_values(model, X, Y, direction))


def _hvp_estimate(net, n_samples, **args):
    from xval import contract, memory

    return sum(memory.peak_parts(contract.quantity("hvp"), net, n_samples, args, 4.0, 0))


stage_hvp.estimate = _hvp_estimate


def stage_ggnvp(net, X, Y, v):
    """``ggnvp`` staged: ``(P,)`` as an array of the selected library."""
    model, X, Y, direction = _prepared(net, X, Y, v, "ggnvp")
    return model.staged(lambda: ggnvp_values(model, X, Y, direction))


stage_ggnvp.estimate = _hvp_estimate  # the same passes, fewer of them
