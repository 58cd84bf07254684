"""Build a network, compute every quantity of the engine contract with the manual engine, torch and jax,
and print the relative errors (``python examples/compare_engines.py``)."""
import numpy as np

import jax_ref
import manual
import torch_ref
from xval.compare import relative_error

net = manual.Network.random(sizes=[4, 16, 16, 3], activations="tanh", loss="cross_entropy", seed=0)
rng = np.random.default_rng(1)
X = rng.standard_normal((8, 4))
Y = np.eye(3)[rng.integers(0, 3, size=8)]  # one-hot targets
v = rng.standard_normal(net.n_params)  # a direction for the Hessian-vector product

calls = {
    "forward": lambda engine: engine.forward(net, X),
    "loss": lambda engine: engine.loss(net, X, Y),
    "gradient": lambda engine: engine.gradient(net, X, Y),
    "per_sample_gradients": lambda engine: engine.per_sample_gradients(net, X, Y),
    "hvp": lambda engine: engine.hvp(net, X, Y, v),
    "hessian_block(0, 2)": lambda engine: engine.hessian_block(net, X, Y, 0, 2),
    "hessian": lambda engine: engine.hessian(net, X, Y),
}

print(net)
print(f"{'quantity':<22} {'shape':>10} {'vs torch':>10} {'vs jax':>10}")
for quantity, call in calls.items():
    ours = call(manual)
    errors = [relative_error(ours, call(engine)) for engine in (torch_ref, jax_ref)]
    print(f"{quantity:<22} {str(np.shape(ours)):>10} {errors[0]:>10.1e} {errors[1]:>10.1e}")
H = manual.hessian(net, X, Y)
print(f"hvp vs H @ v: {relative_error(manual.hvp(net, X, Y, v), H @ v):.1e};  H vs H.T: {relative_error(H, H.T):.1e}")
