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

from ._dense_first_order import backward_values, forward_values
from ._prepared import guard, prepare


def split_direction(model, v):
    """``(V_l, v_l)`` per layer: ``v``'s entries shaped like ``W_l`` and ``b_l`` (views of ``v``, made once when a call
    is staged)."""
    xp = model.xp
    return [
        (xp.reshape(v[start:split], shape), v[split:end])
        for (start, split, end), shape in zip(model.bounds, model.shapes)
    ]


def _forward_r_pass(model, z, d1, direction):
    """``(R a_l, R z_l)`` per layer along ``direction`` (``R z_0 = 0``, so layer 0 has no ``W R z`` term)."""
    Ra, Rz = [], [None]
    for l, ((V, vb), wT) in enumerate(zip(direction, model.weights_t)):
        Ra_l = z[l] @ V.T
        if l > 0:
            Ra_l += Rz[l] @ wT
        Ra_l += vb
        Ra.append(Ra_l)
        Rz.append(d1[l] * Ra_l)
    return Ra, Rz


def hvp_values(model, X, Y, direction):
    """``H v``, ``(P,)`` in the model's library, written once: one forward and one backward R-pass along
    ``direction = split_direction(model, v)``."""
    xp, lib = model.xp, model.lib
    last = model.n_layers - 1
    z, d1, a = forward_values(model, X, keep_pre=True)
    delta = backward_values(model, z, d1, Y)
    Ra, Rz = _forward_r_pass(model, z, d1, direction)

    # Backward R-pass.
    Rdelta = [None] * model.n_layers
    g = model.loss.grad(z[-1], Y, xp)
    HRy = model.loss.hessian_times(z[-1], Y, Rz[-1], xp)
    # f'' terms only where f'' is not identically 0 (identity, relu).
    curvature = model.acts[last].curvature(a[last], z[-1], d1[last], xp)
    Rdelta[last] = d1[last] * HRy if curvature is None else curvature * Ra[last] * g + d1[last] * HRy
    for l in range(last - 1, -1, -1):
        w, (V, _) = model.weights[l + 1], direction[l + 1]
        Rdelta[l] = d1[l] * (delta[l + 1] @ V + Rdelta[l + 1] @ w)
        curvature = model.acts[l].curvature(a[l], z[l + 1], d1[l], xp)
        if curvature is not None:
            Rdelta[l] += curvature * Ra[l] * (delta[l + 1] @ w)  # W^T delta, per sample

    n = X.shape[0]
    out = lib.empty((model.n_params,), model.dtype)
    for l, (start, split, end) in enumerate(model.bounds):
        # R{dE/dW_l} = (1/N) (Rdelta_l^T z_l + delta_l^T Rz_l): both terms as one product over 2N stacked rows
        # (layer 0 has R z_0 = 0: one term).
        if l == 0:
            left, right = Rdelta[0], z[0]
        else:
            left, right = xp.concat([Rdelta[l], delta[l]], axis=0), xp.concat([z[l], Rz[l]], axis=0)
        if n == 1:  # no mean to take: the product and the bias row as they are
            lib.write(out, slice(start, split), "matmul", left.T, right)
            out[split:end] = Rdelta[l][0, ...]
        else:
            lib.write(out, slice(start, split), "matmul", (left / n).T, right)
            out[split:end] = xp.sum(Rdelta[l], axis=0) / n
    return out


def ggnvp_values(model, X, Y, direction):
    """``G v = (1/N) sum_n J_n^T Lambda_n J_n v``, ``(P,)``: the forward R-pass gives ``J v`` (``R y``), and one
    backprop of ``Lambda R y`` gives ``J^T`` of it: the R-operator without its second-order terms (no ``f''``, no
    ``V^T delta``, no ``delta R z^T``), one forward and two passes' work, never forming ``G``."""
    xp, lib = model.xp, model.lib
    last = model.n_layers - 1
    z, d1, _ = forward_values(model, X)
    _, Rz = _forward_r_pass(model, z, d1, direction)
    back = d1[last] * model.loss.hessian_times(z[-1], Y, Rz[-1], xp)  # d/da_last of <Lambda J v, y>
    n = X.shape[0]
    out = lib.empty((model.n_params,), model.dtype)
    for l in range(last, -1, -1):
        start, split, end = model.bounds[l]
        lib.write(out, slice(start, split), "matmul", (back / n).T if n > 1 else back.T, z[l])
        out[split:end] = xp.sum(back, axis=0) / n if n > 1 else back[0, ...]
        if l:
            back = d1[l - 1] * (back @ model.weights[l])
    return out


def _prepared(net, X, Y, v, quantity="hvp"):
    X, Y = check_data(net, X, Y)
    v = check_direction(net, v)
    guard(net, quantity, X.shape[0])
    model, X, Y = prepare(net).data(X, Y)
    return model, X, Y, split_direction(model, model.asarray(v))


def stage_hvp(net, X, Y, v):
    """``hvp`` staged: ``(P,)`` as an array of the selected library."""
    model, X, Y, direction = _prepared(net, X, Y, v)
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
