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
