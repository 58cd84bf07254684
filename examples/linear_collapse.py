"""Problem 5: four stacked linear layers are one linear layer (``python examples/linear_collapse.py``)."""

import numpy as np

import manual

net = manual.Network.random([6, 10, 2, 10, 5], "identity", "mse", seed=0)
rng = np.random.default_rng(1)
X, Y = rng.standard_normal((20, 6)), rng.standard_normal((20, 5))
one = manual.collapse_linear(net)
print(net, "->", one)
print(f"largest output difference: {np.max(np.abs(manual.forward(one, X) - manual.forward(net, X))):.1e}")
print(f"loss: {manual.loss(net, X, Y):.15f} (stack) vs {manual.loss(one, X, Y):.15f} (one layer)")
print(f"rank of the collapsed 5x6 matrix: {np.linalg.matrix_rank(one.weights[0])} (narrowest width: {min(net.sizes)})")
try:
    manual.collapse_linear(manual.Network.random([6, 10, 5], "tanh", "mse"))
except manual.NotLinearError as error:
    print(f"NotLinearError: {error}")
