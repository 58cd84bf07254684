"""manual on other array libraries: the selection by ``XVAL_ARRAY``, every quantity of the contract on
array-api-strict and torch (CPU) against numpy, staged calls that stay in the library, results written once, and
the device-aware memory guard.

With ``XVAL_ARRAY`` set to another library than numpy, the comparison runs on that library only (the CI lines do
that, together with the comparison table against the references); unset, it runs on each CPU library installed.
"""

import tracemalloc

import numpy as np
import pytest

import manual
from manual import arrays
from manual._dense_hessian import hessian_bytes
from xval import compare, config, memory
from xval.contract import QUANTITIES
from xval.errors import ConfigError, MemoryGuardError, UnsupportedError

CPU_LIBRARIES = ("array_api_strict", "torch")


def other_libraries():
    """``XVAL_ARRAY`` when it names another library than numpy; on ``XVAL_DEVICE=cuda`` the GPU library manual takes;
    else every CPU library."""
    chosen = config.array_library()
    if chosen not in (None, "numpy"):
        return [chosen]
    if config.device() == "cuda":
        return [arrays.cuda_default()]
    return list(CPU_LIBRARIES)


@pytest.fixture(params=other_libraries())
def library(request, monkeypatch):
    """The name of a non-numpy library, selected for ``manual`` through ``XVAL_ARRAY`` (a skip when missing); on the
    CPU unless the run is on ``XVAL_DEVICE=cuda``."""
    pytest.importorskip(request.param)
    monkeypatch.setenv("XVAL_ARRAY", request.param)
    if config.device() != "cuda":
        monkeypatch.setenv("XVAL_DEVICE", "cpu")
    return request.param


def _declined_or(function, *arguments):
    """``function(*arguments)``, or the ``UnsupportedError`` it raised."""
    try:
        return function(*arguments)
    except UnsupportedError as exc:
        return exc


def module_of(value):
    return type(value).__module__.split(".")[0]


@pytest.mark.parametrize("quantity", list(QUANTITIES))
def test_every_quantity_agrees_with_numpy(problem, quantity, library, rtol, record_error, monkeypatch):
    calls = QUANTITIES[quantity].calls(problem, every_block=True)
    theirs = [_declined_or(call.evaluate, manual) for call in calls]
    assert arrays.library().name == library
    monkeypatch.setenv("XVAL_ARRAY", "numpy")
    monkeypatch.setenv("XVAL_DEVICE", "cpu")
    ours = [_declined_or(call.evaluate, manual) for call in calls]
    for call, value, expected in zip(calls, theirs, ours):
        if isinstance(expected, UnsupportedError) or isinstance(value, UnsupportedError):
            # declined on numpy (KFAC of a tied layer): declined on every library, for the same reason
            assert str(value) == str(expected), call.label
            continue
        shapes = [np.shape(part) for part in (value if isinstance(value, tuple) else (value,))]
        assert shapes == [np.shape(part) for part in (expected if isinstance(expected, tuple) else (expected,))], (
            call.label
        )
        assert tuple(shapes) == call.shape or shapes == [call.shape], call.label
        value, expected = compare.flat_parts(value), compare.flat_parts(expected)  # kfac_factors' pair as one
        error = compare.assert_close(value, expected, rtol, f"{call.label} on {library} vs numpy, {problem.name}")
        record_error(f"manual on {library} vs numpy", library, problem.name, error)


@pytest.mark.parametrize("name", ["forward", "gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian"])
def test_staged_calls_stay_in_the_library_and_agree_after_to_numpy(name, library):
    net = manual.Network.random([3, 5, 4, 2], "tanh", "mse", seed=3)
    rng = np.random.default_rng(5)
    X, Y, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal(net.n_params)
    arguments = {"forward": (X,), "hvp": (X, Y, v), "hessian_block": (X, Y, 2, 1)}.get(name, (X, Y))
    value = getattr(manual, f"stage_{name}")(net, *arguments)()
    assert module_of(value) == library, f"stage_{name} returned a {type(value)}"
    public = getattr(manual, name)(net, *arguments)
    assert isinstance(public, np.ndarray) and public.dtype == np.float64
    np.testing.assert_allclose(manual.to_numpy(value), public, rtol=1e-15, atol=0)


def test_numpy_is_the_default_and_each_name_selects_its_library():
    assert arrays.library({}).name == "numpy"
    assert arrays.library({"XVAL_ARRAY": "array-api-strict", "XVAL_DEVICE": "cpu"}).name == "array_api_strict"
    torch = pytest.importorskip("torch")
    chosen = arrays.library({"XVAL_ARRAY": "torch", "XVAL_DEVICE": "cpu"})
    assert (chosen.name, chosen.xp.__name__, chosen.native, chosen.device_name) == (
        "torch",
        "array_api_compat.torch",
        torch,
        "cpu",
    )


@pytest.mark.parametrize(
    "env, message",
    [
        ({"XVAL_ARRAY": "jax"}, "XVAL_ARRAY='jax' is not valid; use one of: numpy, cupy, torch, array_api_strict"),
        (
            {"XVAL_ARRAY": "numpy", "XVAL_DEVICE": "cuda"},
            "XVAL_ARRAY=numpy runs on the CPU but XVAL_DEVICE=cuda; use XVAL_ARRAY=cupy",
        ),
        ({"XVAL_ARRAY": "array_api_strict", "XVAL_DEVICE": "cuda"}, "runs on the CPU but XVAL_DEVICE=cuda"),
    ],
)
def test_bad_choices_are_config_errors_that_say_the_fix(env, message):
    with pytest.raises(ConfigError) as info:
        arrays.library(env)
    assert message in str(info.value)


def test_a_missing_library_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    arrays._build.cache_clear()
    arrays._from_settings.cache_clear()
    with pytest.raises(
        ConfigError,
        match=r"XVAL_ARRAY=cupy needs the cupy package, which is not installed; install it \(pip install cupy-cuda12x",
    ):
        arrays.library({"XVAL_ARRAY": "cupy", "XVAL_DEVICE": "cuda"})
    # On a CUDA device without XVAL_ARRAY, manual takes torch when cupy is missing, and says so when torch sees no GPU.
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="XVAL_ARRAY=torch with XVAL_DEVICE=cuda, but torch sees no GPU"):
            arrays.library({"XVAL_DEVICE": "cuda"})
    arrays._build.cache_clear()
    arrays._from_settings.cache_clear()


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_write_puts_a_reshaped_product_into_part_of_the_result(name):
    lib = arrays.library({"XVAL_ARRAY": name, "XVAL_DEVICE": "cpu"})
    xp = lib.xp
    a_np, b_np = np.arange(6.0).reshape(2, 3, 1), np.arange(8.0).reshape(2, 1, 4)
    a, b = lib.asarray(a_np, "float64"), lib.asarray(b_np, "float64")
    out = lib.empty((2, 30), "float64")
    out[...] = xp.zeros((2, 30), dtype=xp.float64)
    same = lib.write(out, (slice(None), slice(5, 17)), "multiply", a, b)
    lib.write(
        out,
        (slice(0, 1), slice(20, 30)),
        "matmul",
        xp.ones((1, 2), dtype=xp.float64),
        xp.ones((2, 10), dtype=xp.float64),
    )
    expected = np.zeros((2, 30))
    expected[:, 5:17] = (a_np * b_np).reshape(2, 12)  # products written by hand: row n is a_n (outer) b_n
    expected[0, 20:] = 2.0
    assert same is out
    np.testing.assert_array_equal(arrays.to_numpy(out), expected)


def test_large_products_with_long_rows_run_with_a_buffer_of_one_row(monkeypatch):
    """numpy's buffered ufunc iterator copies several short rows through its buffer (8192 entries) where it could write
    them in place; manual's large products run with a buffer of one row (rounded down to a multiple of 16), in the
    write threads too, with the caller's floating-point error handling kept, the result unchanged and the buffer
    restored after. Short rows and small products keep numpy's buffer."""
    real, seen = np.multiply, []

    def spy(a, b, out=None):
        seen.append((np.getbufsize(), np.geterrcall()))
        return real(a, b, out=out)

    monkeypatch.setattr(np, "multiply", spy)
    rng = np.random.default_rng(0)
    default = np.getbufsize()

    def handler(kind, flag):
        pass

    cases = [((64, 300), 1, [288]), ((512, 300), 2, [288, 288]), ((4096, 32), 1, [default]), ((8, 300), 1, [default])]
    for shape, threads, buffers in cases:
        seen.clear()
        a, b = rng.standard_normal((shape[0], 1)), rng.standard_normal((1, shape[1]))
        with arrays.pinned_threads(threads), np.errstate(call=handler):
            out = arrays.NUMPY.write(np.empty(shape), slice(None), "multiply", a, b)
        assert [entries for entries, _ in seen] == buffers, shape
        assert all(call is handler for _, call in seen)
        np.testing.assert_array_equal(out, real(a, b))
        assert np.getbufsize() == default


def test_numpy_results_are_written_once(monkeypatch):
    """The peak of a call is its output plus small per-layer work (numpy's 64 KiB ufunc buffer, ``(N, n)`` arrays
    and, for the Hessian, its bounded scratch array): no second copy of the result (concatenating per-layer parts,
    as an engine that builds them apart must, doubles it)."""
    monkeypatch.setenv("XVAL_ARRAY", "numpy")
    monkeypatch.setenv("XVAL_DEVICE", "cpu")
    wide = manual.Network.random([256, 256, 256, 2], "sigmoid", "mse", seed=0)
    batch = manual.Network.random([64, 64, 64, 2], "sigmoid", "mse", seed=0)
    small = manual.Network.random([16, 16, 16, 2], "sigmoid", "mse", seed=0)
    rng = np.random.default_rng(1)
    X, Y, v = rng.standard_normal((16, 256)), rng.standard_normal((16, 2)), rng.standard_normal(wide.n_params)
    for name, net, arguments, cells in [
        ("per_sample_gradients", batch, (X[:, :64], Y), 16 * batch.n_params),
        ("gradient", wide, (X[:1], Y[:1]), wide.n_params),
        ("hvp", wide, (X[:1], Y[:1], v), wide.n_params),
        ("hessian", small, (X[:1, :16], Y[:1]), small.n_params**2),
    ]:
        function = getattr(manual, name)
        function(net, *arguments)  # caches the prepared network
        tracemalloc.start()
        function(net, *arguments)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        output = 8 * cells
        work = output // 4 + (hessian_bytes(net, 1)[1] if name == "hessian" else 0)
        assert peak <= output + work, f"{name}: peak {peak} bytes for a {output}-byte result"


def test_the_memory_guard_uses_the_free_memory_of_the_device():
    assert memory.fits(1000, env={}, available=1000) and not memory.fits(1001, env={}, available=1000)
    with pytest.raises(
        MemoryGuardError, match=r"needs 2000 bytes .* but only 1000 bytes \(1000 bytes\) free on the device"
    ):
        memory.check(2000, "the block", env={}, available=1000)
    # The tighter of the device and XVAL_MAX_BYTES wins.
    with pytest.raises(MemoryGuardError, match="allowed by XVAL_MAX_BYTES"):
        memory.check(2000, "the block", env={"XVAL_MAX_BYTES": "1500"}, available=10**12)
    assert arrays.NUMPY.free_bytes() is None  # on the CPU the guard reads the operating system


def test_to_numpy_gives_numpy_of_the_same_float_dtype_from_every_library():
    strict = pytest.importorskip("array_api_strict")
    torch = pytest.importorskip("torch")
    for value, dtype in (
        (np.arange(3, dtype=np.float32), np.float32),
        (strict.asarray([0.0, 1.0, 2.0]), np.float64),
        (torch.arange(3, dtype=torch.float32), np.float32),
        (np.arange(3), np.float64),
    ):
        out = manual.to_numpy(value)
        assert isinstance(out, np.ndarray) and out.dtype == dtype
        np.testing.assert_array_equal(out, [0.0, 1.0, 2.0])
