"""The array library ``manual`` computes with, chosen by ``XVAL_ARRAY`` (``xval.config``), and the one helper that
writes a product straight into part of a result.

The math in ``manual`` is written against the array-API standard namespace ``xp`` of a ``Library``: numpy (its
main namespace is the standard's since numpy 2), cupy and torch (through ``array-api-compat``), and
``array-api-strict``, the standard's strict reference, which proves that the hot paths use only standard operations.

The standard has no ``out=`` argument, but writing each result once needs it: ``Library.write`` takes the
``out=`` path of numpy, cupy and torch (into a view of the result) and plain slice assignment elsewhere.

On numpy, the broadcast products and copies that write a large result (``Library.write`` with ``multiply``,
``Library.assign``, and the per-sample gradients' rows from ``manual.backprop.ROW_ORDER_BYTES`` on) are split by
rows over ``write_threads()`` threads (``split``) from ``PARALLEL_BYTES`` on: a large result lands on fresh memory,
whose first touch costs more than the arithmetic and is paid per thread. Products written by matmul run on BLAS's
own threads. Large broadcast products run with numpy's ufunc buffer cut to one row (``row_buffer``): numpy's
buffered iterator would copy their rows through it.
"""

import functools
import importlib
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from xval import config
from xval.checks import finite_result  # noqa: F401 (manual's contract functions use it from here)
from xval.errors import ConfigError

from . import _writes

# The write scheduling's knobs, used by the benchmarks and the tests through this public module.
from ._writes import (  # noqa: F401
    EINSUM_ROW,
    PARALLEL_BYTES,
    buffer_of_rows,
    iterator_buffer_bytes,
    numpy_outer,
    pinned_threads,
    quiet_blas,
    row_buffer,
    split,
    splits,
    write_threads,
)


@dataclass(frozen=True, eq=False)
class Library:
    """An array library on one device. ``xp`` is its array-API namespace; ``native`` the module whose functions take
    ``out=`` (numpy, cupy, torch), ``None`` for libraries without it; ``device`` is what ``xp.asarray(...,
    device=)`` takes; ``label`` names both, e.g. ``"torch (cuda:0)"``."""

    name: str
    xp: Any
    native: Optional[Any]
    device: Any
    device_name: str

    @property
    def label(self):
        return f"{self.name} ({self.device_name})"

    @property
    def on_gpu(self):
        return self.device_name.startswith("cuda")

    def dtype(self, numpy_dtype):
        """The library's dtype of the same name as ``numpy_dtype`` (``float64`` or ``float32``)."""
        if self.name == "numpy":  # the hot path of every call: numpy takes its own dtype as it is
            return numpy_dtype
        return getattr(self.xp, np.dtype(numpy_dtype).name)

    def asarray(self, array, numpy_dtype):
        """A numpy array as an array of this library and ``numpy_dtype`` on its device (no copy for numpy)."""
        if self.name == "numpy":
            return np.asarray(array, dtype=numpy_dtype)
        # A private writable copy: torch warns about sharing read-only numpy memory (a Network's arrays are).
        return self.xp.asarray(np.array(array, dtype=numpy_dtype, order="C", copy=True), device=self.device)

    def empty(self, shape, numpy_dtype):
        return self.xp.empty(shape, dtype=self.dtype(numpy_dtype), device=self.device)

    def zeros(self, shape, numpy_dtype):
        return self.xp.zeros(shape, dtype=self.dtype(numpy_dtype), device=self.device)

    def write(self, out, index, op, a, b):
        """``out[index] = op(a, b)``, written once (``_writes.write``)."""
        return _writes.write(self, out, index, op, a, b)

    def product(self, out, index, shape, a, b):
        """``out[index] = a @ b`` of 2-D operands, the product having ``shape`` (``_writes.product``)."""
        return _writes.product(self, out, index, shape, a, b)

    def assign(self, out, index, value):
        """``out[index] = value``, split over the write threads when large (``_writes.assign``)."""
        return _writes.assign(self, out, index, value)

    def outer(self, out, index, a, b):
        """``out[index] = a[:, :, None] * b[:, None, :]``, row by row (``_writes.outer``)."""
        return _writes.outer(self, out, index, a, b)

    def report_outer_overflow(self, a, b):
        return _writes.report_outer_overflow(self, a, b)

    def diag(self, values):
        """``(N, n)`` -> ``(N, n, n)``: a stack of diagonal matrices."""
        n = values.shape[-1]
        if self.name == "numpy":  # zeros, then the diagonal through a strided view (np.eye costs more than the work)
            out = np.zeros(values.shape + (n,), dtype=values.dtype)
            out.reshape(values.shape[0], n * n)[:, :: n + 1] = values
            return out
        return self.xp.eye(n, dtype=values.dtype, device=values.device) * values[:, :, None]

    def add_diagonal(self, stack, values):
        """``stack + diag(values)`` for a stack ``(N, n, n)`` and ``values`` ``(N, n)``; on numpy in place (``stack``
        must be a fresh C-contiguous array)."""
        n = values.shape[-1]
        if self.name == "numpy":
            diagonal = stack.reshape(stack.shape[0], n * n)[:, :: n + 1]
            diagonal += values
            return stack
        return stack + self.diag(values)

    def view(self, array, shape):
        """``array`` reshaped to ``shape`` without a copy (``ValueError`` if that would need one)."""
        if self.name == "torch":
            return array.view(shape)  # raises instead of copying
        # numpy and cupy: every reshape here splits an axis whose entries are contiguous, which never copies
        # (a copy would lose the writes: the comparison tests would see it).
        return array.reshape(shape)

    def synchronize(self):
        """Wait for the device's queued work (CUDA runs asynchronously); nothing on the CPU."""
        if not self.on_gpu:
            return
        if self.name == "cupy":
            self.native.cuda.Device().synchronize()
        else:
            self.native.cuda.synchronize()

    def free_bytes(self):
        """Bytes the device can still hand out (GPU libraries only; ``None`` on the CPU, where the memory guard reads
        the operating system)."""
        if not self.on_gpu:
            return None
        if self.name == "cupy":
            pool = self.native.get_default_memory_pool()
            return int(self.native.cuda.runtime.memGetInfo()[0] + pool.free_bytes())
        free, _ = self.native.cuda.mem_get_info(self.device)
        return int(
            free + self.native.cuda.memory_reserved(self.device) - self.native.cuda.memory_allocated(self.device)
        )


def to_numpy(value):
    """An array of any supported library as a numpy array of its own float dtype (a copy from the device; none for
    numpy)."""
    if isinstance(value, (np.ndarray, np.generic, float, int)):
        value = np.asarray(value)
        return value if value.dtype.kind == "f" else value.astype(np.float64)
    if isinstance(value, (tuple, list)):
        return tuple(to_numpy(part) for part in value)
    module = type(value).__module__
    if module.startswith("torch"):
        value = value.detach().to("cpu").numpy()
    elif module.startswith("cupy"):
        value = value.get()
    else:
        value = np.from_dlpack(value)
    value = np.asarray(value)
    return value if value.dtype.kind == "f" else value.astype(np.float64)


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        raise ConfigError(
            f"XVAL_ARRAY={name} needs the {name} package, which is not installed; install it "
            f"({config.ARRAY_INSTALL[name]}) or choose another: {', '.join(config.ARRAY_LIBRARIES)}"
        ) from None


def _compat(name):
    """``array_api_compat.<name>``, the array-API namespace of cupy or torch."""
    try:
        return importlib.import_module(f"array_api_compat.{name}")
    except ImportError:
        raise ConfigError(
            f"XVAL_ARRAY={name} needs array-api-compat, which is not installed; install it "
            "(pip install array-api-compat, or the project's 'arrays' extra) or use XVAL_ARRAY=numpy"
        ) from None


def cuda_default():
    """cupy when importable, else torch (for ``XVAL_DEVICE=cuda`` without ``XVAL_ARRAY``)."""
    try:
        import cupy  # noqa: F401

        return "cupy"
    except ImportError:
        return "torch"


@functools.lru_cache(maxsize=None)
def _build(name, device_choice):
    """The ``Library`` for ``name`` on ``device_choice`` (``cpu``, ``cuda`` or ``auto``)."""
    if name in ("numpy", "array_api_strict"):
        if device_choice == "cuda":
            raise ConfigError(
                f"XVAL_ARRAY={name} runs on the CPU but XVAL_DEVICE=cuda; "
                "use XVAL_ARRAY=cupy or XVAL_ARRAY=torch for the GPU, or XVAL_DEVICE=cpu"
            )
        if name == "numpy":
            return Library("numpy", np, np, "cpu", "cpu")
        strict = _import("array_api_strict")
        return Library(name, strict, None, strict.Device("CPU_DEVICE"), "cpu")
    if name == "cupy":
        cupy = _import("cupy")
        if device_choice == "cpu":
            raise ConfigError(
                "XVAL_ARRAY=cupy runs on a GPU but XVAL_DEVICE=cpu; use XVAL_DEVICE=cuda or auto, or XVAL_ARRAY=numpy"
            )
        xp = _compat("cupy")
        return Library(name, xp, cupy, cupy.cuda.Device(), f"cuda:{cupy.cuda.Device().id}")
    torch = _import("torch")
    xp = _compat("torch")
    gpu = torch.cuda.is_available()
    if device_choice == "cuda" and not gpu:
        raise ConfigError("XVAL_ARRAY=torch with XVAL_DEVICE=cuda, but torch sees no GPU; use XVAL_DEVICE=cpu or auto")
    device = (
        torch.device("cuda", torch.cuda.current_device()) if gpu and device_choice != "cpu" else torch.device("cpu")
    )
    return Library(name, xp, torch, device, str(device))


def library(env=None):
    """The ``Library`` that ``XVAL_ARRAY`` and ``XVAL_DEVICE`` select (numpy on the CPU by default)."""
    if env is None:  # every call of the engine asks: resolve each pair of raw settings once
        return _from_settings(os.environ.get("XVAL_ARRAY"), os.environ.get("XVAL_DEVICE"))
    return _resolve(env)


@functools.lru_cache(maxsize=64)
def _from_settings(array, device):
    env = {key: value for key, value in (("XVAL_ARRAY", array), ("XVAL_DEVICE", device)) if value is not None}
    return _resolve(env)


def _resolve(env):
    device_choice = config.device(env)
    name = config.array_library(env)
    if name is None:
        name = cuda_default() if device_choice == "cuda" else "numpy"
    return _build(name, device_choice)


NUMPY = Library("numpy", np, np, "cpu", "cpu")
