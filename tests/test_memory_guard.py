"""The memory guard counts a call's whole working memory, per engine: its estimate holds the measured peak (tracemalloc
for manual's numpy arrays; the growth of a subprocess's resident set for torch and jax), and a call over the cap is
refused before it allocates. ``XVAL_MAX_BYTES`` takes whole byte counts, with or without a unit."""

import importlib
import json
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from tests.helpers import selected_engines
from xval import Network, config, memory
from xval.errors import ConfigError, MemoryGuardError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
manual_hessian = importlib.import_module("manual._dense_hessian")
arrays = importlib.import_module("manual.arrays")


def problem(sizes, n):
    rng = np.random.default_rng(0)
    net = Network.random(sizes, "tanh", "mse", seed=0)
    return net, rng.standard_normal((n, sizes[0])), rng.standard_normal((n, sizes[-1]))


@pytest.fixture
def on_the_cpu(monkeypatch):
    """The peaks these tests measure are the host's (tracemalloc, the resident set): on a GPU run too, manual computes
    with numpy and the references (in-process or in a child process) on the CPU."""
    for name, value in [
        ("XVAL_ARRAY", "numpy"),
        ("XVAL_DEVICE", "cpu"),
        ("JAX_PLATFORMS", "cpu"),
        ("CUDA_VISIBLE_DEVICES", ""),
    ]:
        monkeypatch.setenv(name, value)


def traced_peak(call):
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---- the example of the report: a 600 x 600 block whose computation needs gigabytes ----------------------------
@pytest.mark.parametrize("engine_name", ["manual", "torch", "jax"])
def test_a_small_block_with_a_large_working_set_is_refused_before_allocating(engine_name, monkeypatch):
    from xval import engines

    engine = engines.load(engine_name)
    monkeypatch.setenv("XVAL_MAX_BYTES", "5e8")
    net, X, Y = problem([1, 300, 1], 1500)
    peak = []
    with pytest.raises(
        MemoryGuardError, match=r"hessian_block\(l=0, m=0\) \(a 600 x 600 (float64 )?array\) needs \d+ bytes \(\d"
    ):
        peak.append(traced_peak(lambda: engine.hessian_block(net, X, Y, 0, 0)))
    # The result alone (2.9 MB) fits: the refusal comes from the working memory (G is N x 300 x 300, 1.08 GB).
    assert memory.result_bytes(600 * 600, net.dtype) < 5e8 < 1500 * 300 * 300 * 8


# ---- manual: the estimate holds the peak that tracemalloc measures ------------------------------------------------
@pytest.mark.parametrize(
    "sizes, n, l, m",
    [
        ([1, 60, 1], 200, 0, 0),
        ([4, 24, 24, 3], 60, 0, 1),
        ([4, 24, 24, 3], 60, 1, 1),
        ([4, 24, 24, 3], 80, 0, 2),
        ([3, 16, 2], 300, 1, 0),
    ],
)
def test_manual_block_estimate_holds_the_measured_peak(sizes, n, l, m, on_the_cpu):
    import manual

    net, X, Y = problem(sizes, n)
    estimate = sum(manual_hessian.block_bytes(net, l, m, n))
    peak = traced_peak(lambda: manual.hessian_block(net, X, Y, l, m))
    assert estimate / 4 <= peak <= estimate, f"peak {peak} bytes, estimate {estimate} bytes"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sizes", [[16, 16, 16, 16], [4, 32, 32, 3], [64, 64, 4]])
def test_manual_one_sample_hessian_estimate_holds_the_measured_peak(sizes, threads, on_the_cpu):
    """One sample: the Hessian written by rows from every strip's ``M``, on one or two write threads (each with numpy's
    iterator buffers)."""
    import manual

    net, X, Y = problem(sizes, 1)
    assert manual_hessian.one_sample_rows(net, 1, "numpy")
    with arrays.pinned_threads(threads):
        estimate = sum(manual_hessian.hessian_bytes(net, 1))
        peak = traced_peak(lambda: manual.hessian(net, X, Y))
    assert estimate / 4 <= peak <= estimate, f"peak {peak} bytes, estimate {estimate} bytes"


@pytest.mark.parametrize("sizes, n", [([4, 24, 24, 3], 60), ([2, 40, 2], 100)])
def test_manual_hessian_and_per_sample_estimates_hold_the_measured_peak(sizes, n, on_the_cpu):
    import manual

    net, X, Y = problem(sizes, n)
    estimate = sum(manual_hessian.hessian_bytes(net, n))
    peak = traced_peak(lambda: manual.hessian(net, X, Y))
    assert estimate / 4 <= peak <= estimate, f"hessian: peak {peak} bytes, estimate {estimate} bytes"
    estimate = manual.memory_estimate("per_sample_gradients", net, n)
    peak = traced_peak(lambda: manual.per_sample_gradients(net, X, Y))
    assert estimate / 4 <= peak <= estimate, f"per_sample_gradients: peak {peak} bytes, estimate {estimate} bytes"


def test_symmetry_transform_matrix_is_guarded_and_its_estimate_holds(monkeypatch):
    import manual

    net = Network.random([3, 40, 30, 2], "tanh", "mse", seed=0)
    estimate = manual.symmetry.transform_matrix_bytes(net, 0)
    perm = np.arange(40)[::-1].copy()
    peak = traced_peak(lambda: manual.symmetry.transform_matrix(net, 0, np.ones(40, dtype=int), perm))
    assert estimate / 4 <= peak <= estimate, f"peak {peak} bytes, estimate {estimate} bytes"
    monkeypatch.setenv("XVAL_MAX_BYTES", str(estimate - 1))
    with pytest.raises(
        MemoryGuardError,
        match=rf"symmetry.transform_matrix \(a {net.n_params} x {net.n_params} array\) needs {estimate} bytes",
    ):
        manual.symmetry.transform_matrix(net, 0, np.ones(40, dtype=int), perm)


# ---- torch and jax: the estimate holds the growth of a fresh process's resident set -----------------------------
MEASURE = """
import json, sys
import numpy as np
from benchmarks.memory import cpu_peak_growth
from xval import Network, engines
from xval.contract import QUANTITIES, Problem
engine = engines.load(sys.argv[1])
rows = []
for sizes, n, quantity, block in json.loads(sys.argv[2]):
    net = Network.random(sizes, "tanh", "mse", seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((n, sizes[0])), rng.standard_normal((n, sizes[-1]))
    problem = Problem("measured", net, X, Y, rng.standard_normal(net.n_params), block=tuple(block) if block else None)
    spec = QUANTITIES[quantity]
    call = spec.calls(problem)[0]
    function = call.function(engine)
    peak, _ = cpu_peak_growth(lambda: function(net, *call.arguments))
    args = {name: value for name, value in zip(spec.parameters, call.arguments) if name in ("l", "m", "k")}
    rows.append([peak, engine.memory_estimate(quantity, net, n, **args)])
print(json.dumps(rows))
"""
# (sizes, N, quantity, block): first- and second-order calls, and each curvature quantity whose working memory grows
# with the network (a few MB at least, so that the process's own noise does not decide)
SHAPES = [
    ([1, 120, 1], 300, "hessian_block", (0, 0)),
    ([4, 30, 30, 3], 100, "hessian_block", (0, 1)),
    ([4, 30, 30, 3], 60, "hessian", None),
    ([20, 150, 150, 10], 300, "per_sample_gradients", None),
    ([4, 30, 30, 3], 60, "ggn", None),
    ([20, 150, 150, 10], 300, "ggnvp", None),
    ([4, 30, 30, 3], 60, "ggn_block", (1, 1)),
    ([10, 40, 40, 5], 200, "hessian_diagonal", None),
    ([10, 40, 40, 5], 200, "ggn_diagonal", None),
    ([4, 30, 30, 3], 60, "empirical_fisher", None),
    ([20, 150, 150, 10], 100, "output_jacobian", None),
    ([10, 40, 40, 5], 200, "kfac_factors", (1, 1)),
    ([4, 30, 30, 3], 60, "kfac_block", (1, 1)),
    ([10, 40, 40, 5], 100, "hessian_trace", None),
    ([4, 30, 30, 3], 20, "top_eigenvalues", None),
]


@pytest.mark.parametrize("engine_name", ["manual", *(name for name in ("torch", "jax") if name in selected_engines())])
def test_every_engines_estimate_holds_the_measured_peak_of_every_quantity(engine_name, on_the_cpu):
    """The memory guard sizes a call from the engine's ``memory_estimate``: the growth of a fresh process's resident
    set over the call stays under it, for every engine and every quantity that allocates in proportion to the
    network."""
    if not memory_method_available():
        pytest.skip("this system cannot reset a process's peak resident set (Linux /proc/self/clear_refs)")
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, engine_name, json.dumps(SHAPES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    over = [
        f"{shape[2]} {shape[0]} N={shape[1]}: peak {peak} bytes above the estimate {estimate}"
        for (peak, estimate), shape in zip(json.loads(run.stdout.strip().splitlines()[-1]), SHAPES)
        if peak > estimate
    ]
    assert not over, f"{engine_name}: " + "; ".join(over)


def memory_method_available():
    from benchmarks.memory import cpu_method_available

    return cpu_method_available()


# ---- XVAL_MAX_BYTES ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected", [("2e9", 2_000_000_000), ("2000000000", 2_000_000_000), (" 5e8 ", 500_000_000), ("1", 1)]
)
def test_max_bytes_takes_whole_byte_counts(raw, expected):
    assert config.max_bytes({"XVAL_MAX_BYTES": raw}) == expected


@pytest.mark.parametrize(
    "raw, meant", [("10GB", "10000000000"), ("1.5 GiB", "1610612736"), ("512mib", "536870912"), ("4kB", "4000")]
)
def test_max_bytes_with_a_unit_is_refused_with_the_number_to_write(raw, meant):
    with pytest.raises(
        ConfigError, match=re.escape(f"{raw.strip()} is {meant} bytes, so write XVAL_MAX_BYTES={meant}")
    ):
        config.max_bytes({"XVAL_MAX_BYTES": raw})


@pytest.mark.parametrize(
    "raw, message",
    [
        ("inf", "it is not finite"),
        ("-inf", "it is not finite"),
        ("1e400", "it is not finite"),
        ("nan", "it is not finite"),
        ("1.9", "1.9 bytes is not a whole number"),
        ("0", "it is below 1 byte"),
        ("-5", "it is below 1 byte"),
        ("10 parsecs", "it is not a number"),
        ("GB", "it is not a number"),
    ],
)
def test_max_bytes_refuses_values_that_are_not_a_byte_count(raw, message):
    with pytest.raises(
        ConfigError, match=re.escape(f"XVAL_MAX_BYTES={raw!r} is not valid; give a positive number of bytes ({message}")
    ):
        config.max_bytes({"XVAL_MAX_BYTES": raw})
