"""Exact Hessian-vector products by Pearlmutter's R-operator: O(|W|), the Hessian is never formed.

``R{x}`` is the derivative of ``x`` along the direction ``v = (V_l, v_l)`` (a weight matrix and a bias per
layer) at the current parameters. Applying ``R`` to the forward pass and to backprop (docs/hessian.md):

    R a_l = V_l z_l + W_l R z_l + v_l,       R z_{l+1} = f_l'(a_l) R a_l,        R z_0 = 0
    R delta_last = f''(a) R a * g + f'(a) * (H_loss (f'(a) R a))                  (g = dloss/dy_hat)
    R delta_l = f_l''(a_l) R a_l * (W_{l+1}^T delta_{l+1}) + f_l'(a_l) * (V_{l+1}^T delta_{l+1} + W_{l+1}^T R delta_{l+1})

and ``H v = R{grad E}`` is, per layer, ``(1/N) sum_n (R delta_l z_l^T + delta_l R z_l^T)`` and ``(1/N) sum_n R delta_l``.
"""
import numpy as np

from xval.checks import check_data, check_direction, numpy_finite_result

from .activations import get_activation
from .backprop import backward_pass, forward_pass
from .losses import get_loss


def split_direction(net, v):
    """``(V_l, v_l)`` per layer: views of ``v`` shaped like ``W_l`` and ``b_l``."""
    parts = []
    for sl, w in zip(net.param_slices, net.weights):
        chunk = v[sl]
        parts.append((chunk[: w.size].reshape(w.shape), chunk[w.size:]))
    return parts


@numpy_finite_result
def hvp(net, X, Y, v):
    """``H v``, ``(P,)`` float64, with ``H = d2E / dtheta^2``: one forward and one backward R-pass."""
    X, Y = check_data(net, X, Y)
    v = check_direction(net, v)
    direction = split_direction(net, v)
    last = net.n_layers - 1
    acts = [get_activation(name) for name in net.activations]
    loss = get_loss(net.loss)

    a, z = forward_pass(net, X)
    delta = backward_pass(net, a, z, Y)

    # Forward R-pass.
    Ra, Rz = [], [np.zeros_like(X)]
    d1 = []
    for l, ((V, vb), w) in enumerate(zip(direction, net.weights)):
        Ra.append(z[l] @ V.T + vb if l == 0 else z[l] @ V.T + Rz[l] @ w.T + vb)
        d1.append(acts[l].df(a[l]))
        Rz.append(d1[l] * Ra[l])

    # Backward R-pass.
    Rdelta = [None] * net.n_layers
    g = loss.grad(z[-1], Y)
    HRy = (loss.hessian(z[-1], Y) @ Rz[-1][:, :, None])[:, :, 0]
    Rdelta[last] = acts[last].d2f(a[last]) * Ra[last] * g + d1[last] * HRy
    for l in range(last - 1, -1, -1):
        w, (V, _) = net.weights[l + 1], direction[l + 1]
        back = delta[l + 1] @ w  # W^T delta, per sample
        Rdelta[l] = acts[l].d2f(a[l]) * Ra[l] * back + d1[l] * (delta[l + 1] @ V + Rdelta[l + 1] @ w)

    n = X.shape[0]
    parts = []
    for l in range(net.n_layers):
        # R{dE/dW_l} = (1/N) (Rdelta_l^T z_l + delta_l^T Rz_l): both terms as one product over 2N stacked rows.
        left = np.concatenate([Rdelta[l], delta[l]], axis=0) / n
        parts.append((left.T @ np.concatenate([z[l], Rz[l]], axis=0)).reshape(-1))
        parts.append(np.sum(Rdelta[l], axis=0) / n)
    return np.concatenate(parts).astype(np.float64, copy=False)
