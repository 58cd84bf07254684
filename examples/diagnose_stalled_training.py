"""Problem 3: four networks built to stall (or not), each diagnosed, then trained for 100 steps
(``python examples/diagnose_stalled_training.py``)."""

import numpy as np

import manual

rng = np.random.default_rng(0)
X = rng.standard_normal((64, 4))
teacher = manual.Network.random([4, 8, 3], "tanh", "mse", seed=99)
Y = manual.forward(teacher, X) + 0.1 * rng.standard_normal((64, 3))  # a problem a healthy network can fit


def rebuilt(net, weight_factor=1.0, bias_shift=0.0, layers=()):
    """``net`` with the hidden ``layers`` scaled by ``weight_factor`` (weights and biases) and biases shifted."""
    weights = [w * weight_factor if l in layers else w for l, w in enumerate(net.weights)]
    biases = [b * weight_factor + bias_shift if l in layers else b for l, b in enumerate(net.biases)]
    return manual.Network.from_arrays(weights, biases, net.activations, net.loss)


healthy = manual.Network.random([4, 16, 3], "tanh", "mse", seed=1)
scenarios = [
    ("healthy tanh network, lr = 1 / lambda_max", healthy, 1.0),
    ("the same network, lr = 5 / lambda_max", healthy, 5.0),
    (
        "sigmoids initialised 30x too large",
        rebuilt(manual.Network.random([4, 16, 16, 3], "sigmoid", "mse", seed=1), weight_factor=30.0, layers={0, 1}),
        1.0,
    ),
    (
        "relus whose biases were pushed to -3",
        rebuilt(manual.Network.random([4, 16, 16, 3], "relu", "mse", seed=1), bias_shift=-3.0, layers={0, 1}),
        1.0,
    ),
    (
        "five tanh layers initialised 20x too small",
        manual.Network.random([4, 8, 8, 8, 8, 8, 3], "tanh", "mse", seed=1, weight_scale=0.05),
        1.0,
    ),
]
for title, net, factor in scenarios:
    lr = factor / manual.diagnose(net, X, Y).lambda_max
    print(f"=== {title}")
    print(manual.diagnose(net, X, Y, lr=lr))
    steps = 20 if factor > 2 else 100
    trained, losses = manual.train(net, X, Y, lr, steps)
    moved = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(trained.weights, net.weights)]
    print(
        f"  {steps} steps of lr = {lr:.4g}: loss " + " -> ".join(f"{losses[k]:.4g}" for k in (0, 1, 2, 3, 5, 10, steps))
    )
    print("  relative change of W_l: " + ", ".join(f"{100 * m:.2g}%" for m in moved) + "\n")

# 2 / lambda_max is a local bound: between 2 and about 3 the loss oscillates, and gradient descent can drift to
# flatter ground where lambda_max settles near 2 / lr ("edge of stability").
lam = manual.diagnose(healthy, X, Y).lambda_max
trained, losses = manual.train(healthy, X, Y, 3 / lam, 100)
print("=== the healthy network at lr = 3 / lambda_max")
print("  loss, steps 0-12: " + " ".join(f"{v:.3f}" for v in losses[:13]) + f" ... step 100: {losses[-1]:.4f}")
print(
    f"  lambda_max: {lam:.3f} at the start, {manual.diagnose(trained, X, Y).lambda_max:.3f} after 100 steps; "
    f"2 / lr = {2 * lam / 3:.3f}"
)
