"""The networks the sweeps measure: an MLP of equal widths (the width and depth sweeps) and a small convolutional
network grown by its channels (the channels sweep), both with seeded random parameters and the mse loss.

The convolutional network, for ``C`` channels: ``depth`` x (``Conv2d(C, C, 3, padding=1)``, tanh) on ``(C, side,
side)`` inputs, ``AvgPool2d(POOL)``, then flatten and ``Linear(C (side / POOL)^2, outputs)``:
``|W| = depth (9 C^2 + C) + (C (side / POOL)^2 + 1) outputs``. The pooling keeps the head small beside the
convolutions, so that ``|W|`` grows like their work (``C^2``) from a few channels on: with the flattened 8 x 8 maps
fed to the head whole, its ``640 C`` parameters outnumbered the convolutions' up to 35 channels, while the
convolutions (64 products per weight) did the work, and the time grew like ``|W|^1.9``.
"""

import numpy as np

from xval import Network, layers

CONV_DEPTH, CONV_SIDE, CONV_POOL, CONV_OUTPUTS = 2, 8, 4, 10


def mlp(sizes, dtype="float64"):
    """The MLP of layer widths ``sizes``: tanh hidden layers, identity output, mse, seed 0."""
    return Network.random(list(sizes), activations="tanh", loss="mse", seed=0, dtype=dtype)


def conv(channels, depth=CONV_DEPTH, side=CONV_SIDE, outputs=CONV_OUTPUTS, dtype="float64", seed=0, pool=CONV_POOL):
    """The convolutional network of the module docstring, its weights scaled by ``1/sqrt(fan-in)``."""
    rng = np.random.default_rng(seed)
    parameters, records = [], []
    for _ in range(depth):
        weight = rng.standard_normal((channels, channels, 3, 3)) / np.sqrt(9 * channels)
        records += [
            layers.Conv(len(parameters), len(parameters) + 1, dims=2, stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
            layers.Activation("tanh"),
        ]
        parameters += [weight, 0.1 * rng.standard_normal(channels)]
    fan_in = channels * (side // pool) ** 2
    records += [
        layers.Pool("avg", 2, (pool, pool), (pool, pool), (0, 0)),
        layers.Flatten(0, -1),
        layers.Dense(len(parameters), len(parameters) + 1),
    ]
    parameters += [rng.standard_normal((outputs, fan_in)) / np.sqrt(fan_in), 0.1 * rng.standard_normal(outputs)]
    return Network.from_layers(records, parameters, (channels, side, side), loss="mse", dtype=dtype)


def conv_parameters(channels, depth=CONV_DEPTH, side=CONV_SIDE, outputs=CONV_OUTPUTS, pool=CONV_POOL):
    """``|W|`` of ``conv(channels, ...)``."""
    return depth * (9 * channels**2 + channels) + (channels * (side // pool) ** 2 + 1) * outputs
