"""How fast cupy and torch write a same-layer block's memory on this GPU, beside manual's staged block on each.

    python scripts/gpu_write_rates.py > write-rates.txt      (needs a CUDA GPU, cupy, torch, array-api-compat)

For the block of width 128 and 192 (depth 3, one sample, float64) it times, medians and minima of 7 calls after a
warm-up, each waited for: a plain fill of a block-sized array, the broadcast product that writes the block's weight
rows (``z[q] * M[p, c]``) and the same as a batched matmul with an inner dimension of 1, in each library; then
``manual.stage_hessian_block`` with ``XVAL_ARRAY=cupy`` and ``XVAL_ARRAY=torch``. This is what chose torch for the
committed GPU baseline (benchmarks/baseline/gpu/write-rates.txt).
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["XVAL_DEVICE"] = "cuda"

import cupy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import manual  # noqa: E402
from xval import Network  # noqa: E402


def timed(call, wait, repeats=7):
    call()
    wait()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        wait()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), min(seconds)


def rows(width):
    """``{what: (median s, min s)}`` for the block of ``width``."""
    P = width * (width + 1)
    c_wait, t_wait = cupy.cuda.Device().synchronize, torch.cuda.synchronize
    M = cupy.random.standard_normal((width, 1, P))
    z = cupy.random.standard_normal((1, width, 1))
    Mt, zt = torch.as_tensor(M, device="cuda"), torch.as_tensor(z, device="cuda")

    def c_rows():
        return cupy.empty((P, P))[: width * width].reshape(width, width, P)

    def t_rows():
        return torch.empty((P, P), device="cuda", dtype=torch.float64)[: width * width].view(width, width, P)

    out = {
        "cupy empty+fill": timed(lambda: cupy.empty((P, P)).fill(1.0), c_wait),
        "cupy broadcast multiply out=": timed(lambda: cupy.multiply(z, M, out=c_rows()), c_wait),
        "cupy matmul k=1 out=": timed(
            lambda: cupy.matmul(cupy.broadcast_to(z, (width, width, 1)), M, out=c_rows()), c_wait
        ),
        "torch empty+fill_": timed(lambda: torch.empty((P, P), device="cuda", dtype=torch.float64).fill_(1.0), t_wait),
        "torch broadcast mul out=": timed(lambda: torch.mul(zt, Mt, out=t_rows()), t_wait),
        "torch matmul k=1 out=": timed(lambda: torch.matmul(zt.expand(width, width, 1), Mt, out=t_rows()), t_wait),
    }
    net = Network.random([width] * 4, activations="tanh", loss="mse", seed=0)
    X, Y = np.random.default_rng(0).standard_normal((1, width)), np.random.default_rng(1).standard_normal((1, width))
    for name, wait in (("cupy", c_wait), ("torch", t_wait)):
        os.environ["XVAL_ARRAY"] = name
        out[f"manual staged block on {name}"] = timed(manual.stage_hessian_block(net, X, Y, 1, 1), wait)
    os.environ.pop("XVAL_ARRAY")
    cupy.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()
    return out


def main():
    for width in (128, 192):
        nbytes = (width * (width + 1)) ** 2 * 8
        print(f"width {width}: block {nbytes / 1e9:.3f} GB")
        for what, (median, least) in rows(width).items():
            print(
                f"  {what:<34} median {median * 1e3:8.3f} ms  "
                f"min {least * 1e3:8.3f} ms  {nbytes / median / 1e12:5.2f} TB/s"
            )


if __name__ == "__main__":
    main()
