"""The references' staged calls, which the benchmarks time: set-up (checks, placing arrays on the device) happens
when staging, and the staged call returns the engine's own arrays, which agree with ``manual`` once fetched."""

import numpy as np
import pytest

import manual
from benchmarks import quantities, timing
from xval import compare

STAGED = ("forward", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian")
NATIVE = {"torch": "torch.Tensor", "jax": "jax.Array"}


def problem(dtype):
    net = manual.Network.random([3, 5, 4, 2], activations="tanh", loss="mse", seed=3, dtype=dtype)
    X, Y, v = quantities.data(net, batch=4, seed=5)
    return net, X, Y, v


def native_type(name):
    if name == "torch":
        import torch

        return torch.Tensor
    import jax

    return jax.Array


def leaves(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


@pytest.mark.parametrize("quantity", STAGED)
def test_staged_call_returns_device_arrays_that_agree_with_manual(engine, quantity, dtype, rtol):
    name, module = engine
    net, X, Y, v = problem(dtype)
    staged = quantities.prepare(quantity, name, module, net, X, Y, v)
    value = staged.compute()
    # The timed call stops at the engine's own arrays: the copy back to numpy is not part of it.
    assert all(isinstance(leaf, native_type(name)) for leaf in leaves(value)), f"{quantity}: {type(value)}"
    expected = quantities.prepare(quantity, "manual", manual, net, X, Y, v)
    ours = expected.fetch(expected.compute())
    compare.assert_close(staged.fetch(value), ours, rtol, f"staged {quantity} of {name} vs manual")
    # Staging once and calling twice gives the same numbers (nothing is consumed by the first call).
    compare.assert_close(staged.fetch(staged.compute()), ours, rtol, f"second staged {quantity} of {name}")


def test_staging_checks_its_arguments_before_any_computation(engine, monkeypatch):
    name, module = engine
    net, X, Y, v = problem("float64")
    with pytest.raises(manual.LayerIndexError, match="l = 7 is out of range"):
        module.stage_hessian_block(net, X, Y, 7, 0)
    with pytest.raises(manual.ShapeError, match=r"\(4, 2\)"):
        module.stage_gradient(net, X[:, :2], Y)
    with pytest.raises(manual.ShapeError, match=f"\\({net.n_params - 1},\\)"):
        module.stage_hvp(net, X, Y, v[:-1])
    monkeypatch.setenv("XVAL_MAX_BYTES", "100")
    with pytest.raises(manual.MemoryGuardError, match=f"{net.n_params**2 * 8} bytes for the result"):
        module.stage_hessian(net, X, Y)


def test_manual_is_staged_as_its_own_call_on_its_array_library():
    from manual import arrays

    net, X, Y, v = problem("float64")
    staged = quantities.prepare("hvp", "manual", manual, net, X, Y, v)
    value = staged.compute()
    lib = arrays.library()  # numpy unless XVAL_ARRAY / XVAL_DEVICE choose another (cupy or torch on a GPU)
    assert type(value) is type(lib.empty((1,), np.float64))
    np.testing.assert_array_equal(staged.fetch(value), manual.hvp(net, X, Y, v))


def test_calls_timed_in_turn_alternate_within_every_repeat_and_take_turns_going_first():
    order = []
    calls = [lambda: order.append("a"), lambda: order.append("b")]
    stats = timing.time_calls(calls, repeats=3, min_repeat_s=0.0)
    # One warm-up run each, then both in every repeat, the first to go rotating (one call per repeat when a repeat
    # may be as short as one call).
    assert order == ["a", "b"] + ["a", "b"] + ["b", "a"] + ["a", "b"]
    assert [s["repeats"] for s in stats] == [3, 3] and [s["number"] for s in stats] == [1, 1]
    assert all(s["min"] <= s["median"] <= s["max"] for s in stats)


def test_time_call_repeats_a_short_call_enough_times_per_repeat():
    count = [0]

    def call():
        count[0] += 1

    stats = timing.time_call(call, repeats=5, min_repeat_s=0.001, first=1e-6)
    # A call far shorter than a repeat runs many times per repeat; the warm-up given as ``first`` is not rerun.
    assert stats["number"] > 1 and stats["first_call"] == 1e-6
    assert count[0] == 1 + 5 * stats["number"]  # the calibration run, then the repeats


def test_jax_memory_figure_falls_back_to_the_compiled_plan_when_the_peak_counter_cannot_see_the_call():
    jax_ref = pytest.importorskip("jax_ref")
    from benchmarks import memory

    net = manual.Network.random([16, 16, 16], activations="tanh", loss="mse", seed=0)
    X, Y, _ = quantities.data(net, batch=1)
    call = jax_ref.stage_hessian_block(net, X, Y, 1, 1)
    nbytes, method, result = memory.gpu_peak_growth(call, "jax")
    side = net.layer_param_counts[1]
    assert nbytes >= side * side * 8  # at least the (P_1, P_1) float64 output
    import jax

    if jax.devices()[0].memory_stats() is None:  # the CPU keeps no peak counter: the figure must be the plan
        assert method.startswith("jax compiled memory_analysis")
    compare.assert_close(jax_ref.to_numpy(result), manual.hessian_block(net, X, Y, 1, 1), 1e-10, "block")
