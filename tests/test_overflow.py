"""No silent non-finite result: an overflow is reported whichever thread it happened on (OpenBLAS's workers raise
their floating-point flags on their own threads, where the calling thread's checks never see them)."""

import numpy as np
import pytest

import manual
from xval import Network
from xval.errors import OverflowResultError


def _wide_identity_problem():
    """A 512-wide identity layer on 2,000 samples, one of them at 1e307 in the second half: its products overflow on
    a BLAS worker thread when BLAS uses more than one."""
    rng = np.random.default_rng(0)
    net = Network.from_arrays([rng.standard_normal((512, 512))], [np.zeros(512)], ["identity"], "mse")
    X = rng.standard_normal((2000, 512))
    X[1500] = 1e307
    return net, X, np.zeros((2000, 512))


@pytest.mark.parametrize("quantity", ["loss", "forward", "gradient"])
def test_an_overflow_on_a_worker_thread_is_reported(quantity):
    from threadpoolctl import threadpool_limits

    net, X, Y = _wide_identity_problem()
    arguments = (X,) if quantity == "forward" else (X, Y)
    with threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(OverflowResultError, match="overflow"):
            getattr(manual, quantity)(net, *arguments)


def test_an_overflow_in_the_first_row_is_reported_too():
    net, X, Y = _wide_identity_problem()
    X[0] = 1e307
    with pytest.raises(OverflowResultError, match="layer 0"):
        manual.loss(net, X, Y)


def test_a_float32_network_gets_float32_results_and_half_the_memory_of_float64():
    """A float32 block is float32 through and through: its result and its peak are half of float64's."""
    import tracemalloc

    peaks = {}
    for dtype in ("float64", "float32"):
        net = Network.random([48, 48, 48, 4], "sigmoid", "mse", seed=0).astype(dtype)
        rng = np.random.default_rng(0)
        X, Y = rng.standard_normal((1, 48)), rng.standard_normal((1, 4))
        manual.hessian_block(net, X, Y, 1, 1)
        tracemalloc.start()
        block = manual.hessian_block(net, X, Y, 1, 1)
        peaks[dtype] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert block.dtype == np.dtype(dtype)
        assert isinstance(manual.loss(net, X, Y), float)
    assert 0.45 <= peaks["float32"] / peaks["float64"] <= 0.55, peaks
