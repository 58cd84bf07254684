"""Measure the peak memory growth of hessian_block, hessian and per_sample_gradients per engine over a few sizes,
next to the memory guard's estimate: ``python scripts/measure_peaks.py [ENGINE ...]``. One process per engine,
each shape measured on its first call (jax's compile included), by ``benchmarks.memory.cpu_peak_growth``."""

import json
import subprocess
import sys

SHAPES = [  # (sizes, N, quantity, l, m)
    ([1, 100, 1], 300, "hessian_block", 0, 0),
    ([1, 200, 1], 300, "hessian_block", 0, 0),
    ([1, 200, 1], 600, "hessian_block", 0, 0),
    ([1, 300, 1], 500, "hessian_block", 0, 0),
    ([4, 60, 60, 3], 200, "hessian_block", 0, 1),
    ([4, 60, 60, 3], 200, "hessian_block", 1, 1),
    ([4, 60, 60, 3], 400, "hessian_block", 0, 2),
    ([4, 40, 40, 3], 200, "hessian", None, None),
    ([4, 60, 60, 3], 100, "hessian", None, None),
    ([20, 200, 200, 10], 500, "per_sample_gradients", None, None),
    ([20, 300, 300, 10], 300, "per_sample_gradients", None, None),
]


def _estimate(engine, quantity, net, n, l, m):
    """The engine's own estimate (every engine states its memory model as ``memory_estimate``)."""
    return engine.memory_estimate(quantity, net, n, **({"l": l, "m": m} if quantity == "hessian_block" else {}))


def measure(engine_name):
    import numpy as np

    from benchmarks.memory import cpu_peak_growth
    from xval import Network, engines

    engine = engines.load(engine_name)
    rows = []
    for sizes, n, quantity, l, m in SHAPES:
        net = Network.random(sizes, "tanh", "mse", seed=0)
        rng = np.random.default_rng(0)
        X, Y = rng.standard_normal((n, sizes[0])), rng.standard_normal((n, sizes[-1]))
        args = (net, X, Y) + ((l, m) if quantity == "hessian_block" else ())
        estimate = _estimate(engine, quantity, net, n, l, m)
        peak, _ = cpu_peak_growth(lambda: getattr(engine, quantity)(*args))
        rows.append(
            {
                "engine": engine_name,
                "quantity": quantity,
                "sizes": sizes,
                "N": n,
                "l": l,
                "m": m,
                "peak": peak,
                "estimate": estimate,
            }
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        measure(sys.argv[2])
        sys.exit(0)
    for name in sys.argv[1:] or ["manual", "torch", "jax"]:
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
        for row in json.loads(out.stdout.strip().splitlines()[-1]):
            ratio = row["peak"] / row["estimate"] if row["estimate"] else float("nan")
            print(
                f"{row['engine']:<7} {row['quantity']:<21} {'x'.join(map(str, row['sizes'])):<13} N={row['N']:<4} "
                f"l,m={row['l']},{row['m']}  peak {row['peak'] / 2**20:8.1f} MiB  "
                f"estimate {row['estimate'] / 2**20:8.1f} MiB  peak/estimate {ratio:.2f}"
            )
