"""Build a network, compute every first-order quantity with the manual engine, torch and jax, and print
the relative errors (``python examples/compare_engines.py``)."""
import numpy as np

import jax_ref
import manual
import torch_ref
from xval.compare import relative_error

net = manual.Network.random(sizes=[4, 16, 16, 3], activations="tanh", loss="cross_entropy", seed=0)
rng = np.random.default_rng(1)
X = rng.standard_normal((8, 4))
Y = np.eye(3)[rng.integers(0, 3, size=8)]  # one-hot targets

print(net)
print(f"{'quantity':<22} {'vs torch':>10} {'vs jax':>10}")
for quantity in ["forward", "loss", "gradient", "per_sample_gradients"]:
    args = (net, X) if quantity == "forward" else (net, X, Y)
    ours = getattr(manual, quantity)(*args)
    errors = [relative_error(ours, getattr(engine, quantity)(*args)) for engine in (torch_ref, jax_ref)]
    print(f"{quantity:<22} {errors[0]:>10.1e} {errors[1]:>10.1e}")
