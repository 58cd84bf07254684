"""manual's large writes split over threads (``manual.arrays.split``), forced on small problems: every quantity
that splits agrees with torch.func and is bit for bit what one thread writes (each entry is the same product, only
the thread differs); an overflow inside a worker thread is still reported; BLAS's thread count comes back after
``quiet_blas``; ``XVAL_THREADS`` is read."""

import os
import importlib
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import manual
from manual import _small as small
from manual import _writes as writes
from manual import arrays
from xval import compare

torch_ref = pytest.importorskip("torch_ref")
backprop = importlib.import_module("manual._dense_first_order")


@pytest.fixture
def split_everything(monkeypatch):
    """Every write split, over 3 threads (more than the 2 CI cores: uneven parts, waiting threads), tiny networks on
    the batched paths too."""
    monkeypatch.setattr(writes, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(small, "RESULT_BYTES", 0)
    monkeypatch.setattr(small, "STACKED_BYTES", 0)
    monkeypatch.setattr(backprop, "ROW_ORDER_BYTES", 0)
    with arrays.pinned_threads(3):
        yield


def problem(n, activation="tanh", loss="mse"):
    net = manual.Network.random([3, 5, 4, 2], activations=activation, loss=loss, seed=3)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, 3))
    Y = rng.dirichlet(np.ones(2), size=n) if loss == "cross_entropy" else rng.standard_normal((n, 2))
    return net, X, Y


CALLS = {
    "gradient": lambda engine, net, X, Y: engine.gradient(net, X, Y),
    "per_sample_gradients": lambda engine, net, X, Y: engine.per_sample_gradients(net, X, Y),
    "hessian": lambda engine, net, X, Y: engine.hessian(net, X, Y),
    "hessian_block(0, 2)": lambda engine, net, X, Y: engine.hessian_block(net, X, Y, 0, 2),
    "hessian_block(2, 0)": lambda engine, net, X, Y: engine.hessian_block(net, X, Y, 2, 0),
    "hessian_block(1, 1)": lambda engine, net, X, Y: engine.hessian_block(net, X, Y, 1, 1),
}


@pytest.mark.parametrize("n", [1, 6])
@pytest.mark.parametrize("quantity", list(CALLS))
def test_split_writes_match_torch_and_one_thread_bit_for_bit(split_everything, quantity, n):
    net, X, Y = problem(n, "sigmoid" if "hessian" in quantity else "tanh", "cross_entropy")
    split = CALLS[quantity](manual, net, X, Y)
    assert compare.relative_error(split, CALLS[quantity](torch_ref, net, X, Y)) <= 1e-12
    with arrays.pinned_threads(1):
        assert np.array_equal(CALLS[quantity](manual, net, X, Y), split)


def test_split_covers_every_row_once_and_raises_a_workers_error():
    seen = []
    with arrays.pinned_threads(4):
        arrays.split(10, lambda start, stop: seen.extend(range(start, stop)), nbytes=arrays.PARALLEL_BYTES)
    assert sorted(seen) == list(range(10))

    def fail_late(start, stop):
        if start > 0:
            raise ValueError(f"part from {start}")

    with arrays.pinned_threads(3), pytest.raises(ValueError, match="part from"):
        arrays.split(9, fail_late, nbytes=arrays.PARALLEL_BYTES)
    small = []
    with arrays.pinned_threads(4):  # below PARALLEL_BYTES: one call, here
        arrays.split(10, lambda start, stop: small.append((start, stop)), nbytes=arrays.PARALLEL_BYTES - 1)
    assert small == [(0, 10)]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("inputs", [3, arrays.EINSUM_ROW])
def test_an_overflow_in_the_split_writes_is_reported(monkeypatch, threads, inputs):
    """Inputs of 1e200 through identity layers: every factor is finite, the written products are not (per-sample
    gradients: delta_1 ~ 4e202 times z_1 ~ 2e200, written by einsum, which reports no floating-point events, for
    short rows, and by a broadcast product with a one-row buffer for long ones; a one-sample block (0, 0): z_0 ~ 1e200
    times M ~ 1e202, written by products split over worker threads)."""
    monkeypatch.setattr(writes, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(writes, "BUFFERED_BYTES", 0)
    monkeypatch.setattr(backprop, "ROW_ORDER_BYTES", 0)
    monkeypatch.setattr(small, "RESULT_BYTES", 0)  # the one-sample block by the batched path's split products
    net = manual.Network.from_arrays([np.eye(2, inputs), np.full((2, 2), 10.0)], [np.zeros(2)] * 2, "identity", "mse")
    with arrays.pinned_threads(threads):
        with pytest.raises(manual.NonFiniteError, match="per_sample_gradients overflowed float64 on finite inputs"):
            manual.per_sample_gradients(net, np.full((4, inputs), 1e200), np.zeros((4, 2)))
        with pytest.raises(manual.NonFiniteError, match="hessian_block overflowed float64 on finite inputs"):
            manual.hessian_block(net, np.full((1, inputs), 1e200), np.zeros((1, 2)), 0, 0)


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_runs_on_one_thread_inside_quiet_blas_and_comes_back(monkeypatch):
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(writes, "PARALLEL_BYTES", 0)
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        with arrays.pinned_threads(2), arrays.quiet_blas(arrays.NUMPY, 1, writes.QUIET_FLOPS_PER_BYTE):
            inside = _blas_threads()
        assert _blas_threads() == before
        with arrays.pinned_threads(1), arrays.quiet_blas(arrays.NUMPY, 1, 0):  # no split, nothing changes
            assert _blas_threads() == before
        with (
            arrays.pinned_threads(2),
            arrays.quiet_blas(arrays.NUMPY, 1, writes.QUIET_FLOPS_PER_BYTE + 1),
        ):  # large products
            assert _blas_threads() == before
    assert before and all(count == 2 for count in before) and all(count == 1 for count in inside)


def test_xval_threads_sets_the_write_threads_capped_by_the_cpus(monkeypatch):
    from xval import config

    monkeypatch.setenv("XVAL_THREADS", "5")
    assert arrays.write_threads() == min(5, config.cpus())
    with arrays.pinned_threads(2):
        assert arrays.write_threads() == 2
    assert arrays.write_threads() == min(5, config.cpus())
    monkeypatch.setenv("XVAL_THREADS", "4096")  # a count the machine cannot run never sizes a split or an estimate
    assert arrays.write_threads() == config.cpus()
    assert arrays.iterator_buffer_bytes(10**9) == config.cpus() * 3 * np.getbufsize() * 8
    monkeypatch.setenv("XVAL_THREADS", "1")
    assert not arrays.splits(arrays.NUMPY, 10**9)


def test_the_readme_states_the_split_threshold():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert arrays.PARALLEL_BYTES == 2**20
    assert "(broadcast products and copies of 1 MiB or more, `manual.arrays.PARALLEL_BYTES`;" in readme


FORKED = """
import os, sys
from manual import arrays

def split():
    seen = []
    with arrays.pinned_threads(2):
        arrays.split(4, lambda start, stop: seen.extend(range(start, stop)), nbytes=arrays.PARALLEL_BYTES)
    return sorted(seen)

split()  # the parent's pool now has a thread, which a forked child does not inherit
pid = os.fork()
if pid == 0:
    os._exit(0 if split() == [0, 1, 2, 3] else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_process_forked_after_a_split_gets_its_own_write_threads():
    """In a fresh interpreter (numpy and manual only: forking a process that runs jax's threads is unsafe)."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-c", FORKED], timeout=60, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the forked child's split did not finish (it waited on threads it did not inherit)")
    assert done.returncode == 0, done.stderr


def test_a_split_inside_a_part_runs_in_that_part():
    seen = []

    def outer(start, stop):
        arrays.split(2, lambda a, b: seen.append((start, a, b)), nbytes=arrays.PARALLEL_BYTES)

    with arrays.pinned_threads(2):
        arrays.split(2, outer, nbytes=arrays.PARALLEL_BYTES)
    assert sorted(seen) == [(0, 0, 1), (0, 1, 2), (1, 0, 2)]  # the caller's part splits; the worker's runs whole


def test_one_pool_per_thread_count_whatever_the_row_count(monkeypatch):
    monkeypatch.setattr(writes, "_POOLS", {})
    with arrays.pinned_threads(4):
        for n in range(2, 9):  # 2 and 3 rows use fewer threads than 4, from the same pool
            arrays.split(n, lambda start, stop: None, nbytes=arrays.PARALLEL_BYTES)
    assert list(writes._POOLS) == [(3, os.getpid())]


def test_when_no_thread_can_start_the_caller_writes_every_part(monkeypatch):
    """At interpreter shutdown (a user thread still running) the pool refuses new work; the split goes on here."""

    class Closed:
        def submit(self, *args):
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(writes, "_pool", lambda workers: Closed())
    seen = []
    with arrays.pinned_threads(3):
        arrays.split(7, lambda start, stop: seen.extend(range(start, stop)), nbytes=arrays.PARALLEL_BYTES)
    assert sorted(seen) == list(range(7))
