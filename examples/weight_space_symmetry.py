"""Problem 4: the 2^N N! sign-flip-and-permutation orbit of a tanh layer, its "ALMOST" exceptions, and how
the gradient moves with it (``python examples/weight_space_symmetry.py``)."""

import math

import numpy as np

import manual
from manual import symmetry
from xval import engines
from xval.errors import EngineUnavailableError

net = manual.Network.random([3, 4, 2], "tanh", "mse", seed=0)
rng = np.random.default_rng(1)
X, Y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))


def distinct(networks):
    return len({(member.to_vector() + 0.0).tobytes() for member in networks})  # + 0.0: -0.0 counts as 0.0


members = list(symmetry.orbit(net, 0))
outputs = manual.forward(net, X)
worst = max(np.max(np.abs(manual.forward(m, X) - outputs)) for m in members)
print(net)
print(f"hidden layer of N = 4 tanh units: 2^N N! = {2**4 * math.factorial(4)} group elements")
print(
    f"  orbit members: {len(members)}, distinct parameter vectors: {distinct(members)}, "
    f"largest output difference: {worst:.1e}"
)

W, b, V = (np.array(a) for a in (net.weights[0], net.biases[0], net.weights[1]))
W[3], b[3], V[:, 3] = W[0], b[0], V[:, 0]  # unit 3 a copy of unit 0
copy = manual.Network.from_arrays([W, V], [b, net.biases[1]], net.activations, net.loss)
print(
    f"unit 3 made a copy of unit 0: is_degenerate = {symmetry.is_degenerate(copy, 0)}; {symmetry.degeneracies(copy, 0)}"
)
print(f"  distinct parameter vectors: {distinct(symmetry.orbit(copy, 0))} (the swap of units 0 and 3 fixes theta)")

signs, perm = np.array([-1, 1, -1, 1]), np.array([2, 0, 3, 1])
J = symmetry.transform_matrix(net, 0, signs, perm)
moved = symmetry.transform(net, 0, signs, perm)
checked = {"manual": manual}
try:
    checked["torch"] = engines.load("torch")
except EngineUnavailableError as exc:
    print(f"note: {exc}")
for name, engine in checked.items():
    g, g_moved = engine.gradient(net, X, Y), engine.gradient(moved, X, Y)
    H, H_moved = engine.hessian(net, X, Y), engine.hessian(moved, X, Y)
    print(
        f"{name:>6}: |g(J theta) - J g(theta)| = {np.max(np.abs(g_moved - J @ g)):.1e}, "
        f"|H(J theta) - J H J^T| = {np.max(np.abs(H_moved - J @ H @ J.T)):.1e}"
    )
