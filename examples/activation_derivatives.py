"""Problem 1: sigma' = sigma (1 - sigma) by sympy, and every activation's hand-written f', f'' against
sympy at 30 digits (``python examples/activation_derivatives.py``)."""

import sys

import numpy as np

import manual

try:
    import sympy as sp
except ImportError as exc:
    sys.exit(
        f"note: this example checks the derivatives with sympy, which is not importable ({exc}); "
        "run: pip install sympy  (or: pip install -e '.[test]')"
    )

x = sp.Symbol("x", real=True)
sigma = 1 / (1 + sp.exp(-x))
print(f"d/dx {sigma} = {sp.diff(sigma, x)}")
print(f"simplify(sigma' - sigma (1 - sigma)) = {sp.simplify(sp.diff(sigma, x) - sigma * (1 - sigma))}")

oracle = {"identity": x, "sigmoid": sigma, "tanh": sp.tanh(x), "relu": sp.Max(x, 0), "softplus": sp.log(1 + sp.exp(x))}
grid = np.array([-1000.0, -40.0, -5.0, -0.5, 0.25, 3.0, 36.0, 1000.0])
print(f"largest |manual - sympy| over x in {grid.tolist()}:")
print(f"{'activation':<10} {'f':>9} {'f prime':>9} {'f second':>9}")
for name, expr in oracle.items():
    act = manual.get_activation(name)
    errors = []
    for order, ours in enumerate((act.f, act.df, act.d2f)):
        exact = np.array([float(sp.diff(expr, x, order).evalf(30, subs={x: sp.Float(p, 30)})) for p in grid])
        errors.append(np.max(np.abs(ours(grid) - exact)))
    print(f"{name:<10} " + " ".join(f"{e:>9.1e}" for e in errors))
