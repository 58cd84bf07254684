"""float32 comparisons need full float32 matmuls: TF32-like passes (NVIDIA GPUs' default for jax, a switch in torch)
keep 10 bits of mantissa and miss the float32 tolerance, so the references ask for full precision, and this shows
that the setting matters (a CPU emulation: operands rounded to 10 mantissa bits before each matmul)."""

import numpy as np
import pytest

import manual
from xval import compare


def tf32(array):
    """float32 with the mantissa rounded to 10 bits (to nearest, ties away from zero), as a TF32 matmul reads it."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def forward_float32(net, X, round_operands):
    """Outputs in float32, written independently of the engines, with ``round_operands`` applied to both matmul
    operands of every layer."""
    z = X.astype(np.float32)
    for w, b, name in zip(net.weights, net.biases, net.activations):
        a = round_operands(z) @ round_operands(w.astype(np.float32)).T + b.astype(np.float32)
        z = manual.get_activation(name).f(a).astype(np.float32)
    return z


def test_rounding_keeps_ten_mantissa_bits():
    assert tf32(np.float32(1.0 + 2.0**-10)) == np.float32(1.0 + 2.0**-10)  # representable: kept
    assert tf32(np.float32(1.0 + 2.0**-12)) == np.float32(1.0)  # below half a unit: rounded away
    assert tf32(np.float32(1.0 + 3 * 2.0**-12)) == np.float32(1.0 + 2.0**-10)  # above half: rounded up


@pytest.mark.parametrize("sizes", [[4, 8, 3], [16, 32, 32, 4], [64, 64, 64, 64, 8]])
def test_tf32_like_matmuls_fail_the_float32_tolerance_where_full_float32_passes(sizes):
    net = manual.Network.random(sizes, "tanh", "mse", seed=0)
    X = np.random.default_rng(1).standard_normal((8, sizes[0]))
    exact = manual.forward(net, X)  # float64
    rtol = compare.TOLERANCES["float32"]
    assert compare.relative_error(forward_float32(net, X, lambda a: a), exact) < rtol / 100
    assert compare.relative_error(forward_float32(net, X, tf32), exact) > rtol


def test_the_references_ask_for_full_float32_matmuls():
    torch = pytest.importorskip("torch")
    import torch_ref  # noqa: F401  (importing the reference sets the precision)

    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    jax = pytest.importorskip("jax")
    import jax_ref  # noqa: F401

    assert jax.config.jax_default_matmul_precision == "highest"
