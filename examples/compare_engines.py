"""Build a network, compute every quantity of the engine contract with the manual engine, torch and jax,
and print the relative errors (``python examples/compare_engines.py``). The quantities come from the contract
table; an engine whose package is missing gets a one-line note instead of a column."""

import numpy as np

import manual
from xval import engines
from xval.compare import relative_error
from xval.contract import QUANTITIES, Problem
from xval.errors import EngineUnavailableError

net = manual.Network.random(sizes=[4, 16, 16, 3], activations="tanh", loss="cross_entropy", seed=0)
rng = np.random.default_rng(1)
X = rng.standard_normal((8, 4))
Y = np.eye(3)[rng.integers(0, 3, size=8)]  # one-hot targets
v = rng.standard_normal(net.n_params)  # a direction for the Hessian-vector product
problem = Problem("example", net, X, Y, v, block=(0, 2))

references = {}
for name in ("torch", "jax"):
    try:
        references[name] = engines.load(name)
    except EngineUnavailableError as exc:
        print(f"note: {exc}")

print(net)
print(f"{'quantity':<22} {'shape':>18}" + "".join(f" {'vs ' + name:>10}" for name in references))
for quantity in QUANTITIES.values():
    for call in quantity.calls(problem):
        ours = call.evaluate(manual)
        errors = "".join(f" {relative_error(ours, call.evaluate(module)):>10.1e}" for module in references.values())
        shape = " ".join(str(np.shape(part)) for part in ours) if isinstance(ours, tuple) else str(np.shape(ours))
        print(f"{call.label:<22} {shape:>18}{errors}")
H = manual.hessian(net, X, Y)
print(f"hvp vs H @ v: {relative_error(manual.hvp(net, X, Y, v), H @ v):.1e};  H vs H.T: {relative_error(H, H.T):.1e}")
