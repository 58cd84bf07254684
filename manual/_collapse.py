"""Problem 5: a stack of linear layers is one linear layer.

With ``f_l(a) = a`` for every layer, ``y_hat = W_{L-1}(... W_1 (W_0 x + b_0) + b_1 ...) + b_{L-1}``
``= W x + b`` with ``W = W_{L-1} ... W_1 W_0`` and ``b = W_{L-1}(... (W_1 b_0 + b_1) ...) + b_{L-1}``:
the composition of affine maps is affine. ``W`` factors through every hidden width, so
``rank(W) <= min_l n_l``: stacking linear layers never adds representative power, it can only remove it.
"""

from xval.checks import check_network
from xval.errors import XvalError
from xval.network import Network


class NotLinearError(XvalError, ValueError):
    """A network with a non-identity activation, which no single linear layer can represent."""


def collapse_linear(net):
    """The one-layer network ``(W, b)`` computing the same function (and, on the same data, the same loss).

    ``W`` is ``(n_L, n_0)``: ``W = W_{L-1} ... W_0``; ``b`` folds the biases through the later layers.
    Raises ``NotLinearError`` unless every activation, the output one included, is ``identity``.
    """
    check_network(net)
    others = [(layer, name) for layer, name in enumerate(net.activations) if name != "identity"]
    if others:
        listed = ", ".join(f"layer {layer} is {name!r}" for layer, name in others)
        raise NotLinearError(
            f"collapse_linear needs every activation to be 'identity', but {listed}; a non-linear activation makes the "
            "network more than one affine map, so it cannot be collapsed (build the network with "
            "activations='identity' and an 'identity' output)"
        )
    W, b = net.weights[0], net.biases[0]
    for w_next, b_next in zip(net.weights[1:], net.biases[1:]):
        W, b = w_next @ W, w_next @ b + b_next
    return Network.from_arrays([W], [b], ["identity"], net.loss, dtype=net.dtype)  # the product may overflow: checked
