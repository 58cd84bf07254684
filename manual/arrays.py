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
import contextlib
import contextvars
import functools
import importlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from xval import config
from xval.checks import finite_result  # noqa: F401 (manual's contract functions use it from here)
from xval.errors import ConfigError


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
        """``out[index] = op(a, b)``, written once; ``op`` is ``"multiply"`` or ``"matmul"``.

        ``op(a, b)`` may have another shape than ``out[index]`` (same number of entries, row-major): the product of
        a layer ``(n_out, n_in)`` written into its flat slice. With ``out=`` the product goes straight into a view of
        ``out`` reshaped to the product's shape (a reshape that splits axes, which never copies).
        """
        if self.native is None:
            value = getattr(self.xp, op)(a, b)
            target_shape = out[index].shape
            out[index] = value if value.shape == target_shape else self.xp.reshape(value, target_shape)
            return out
        target, shape = out[index], _product_shape(op, a.shape, b.shape)
        target = target if target.shape == shape else self.view(target, shape)
        function = getattr(self.native, op)
        if op != "multiply" or self.name != "numpy" or target.nbytes < min(BUFFERED_BYTES, PARALLEL_BYTES):  # small
            function(a, b, out=target)
            return out
        with row_buffer(target):
            if shape[0] > 1 and target.nbytes >= PARALLEL_BYTES:
                # Split the product's first axis over the write threads; an operand broadcast along it (extent 1) is
                # shared. (matmul runs on BLAS's own threads.)
                def part(start, stop):
                    rows = slice(start, stop)
                    function(a[rows] if a.shape[0] > 1 else a, b[rows] if b.shape[0] > 1 else b, out=target[rows])

                split(shape[0], part, target.nbytes)
            else:
                function(a, b, out=target)
        return out

    def assign(self, out, index, value):
        """``out[index] = value`` (same shape); on numpy split by rows over the write threads when large."""
        if self.name != "numpy" or value.nbytes < PARALLEL_BYTES:
            out[index] = value
            return out
        target = out[index]

        def part(start, stop):
            target[start:stop] = value[start:stop]

        split(target.shape[0], part, target.nbytes)
        return out

    def outer(self, out, index, a, b):
        """``out[index] = a[:, :, None] * b[:, None, :]`` for ``a`` ``(N, J)`` and ``b`` ``(N, I)``: the outer product of
        every row pair, row-major, written once. On numpy, rows shorter than ``EINSUM_ROW`` entries are written by
        ``einsum``, whose loop beats a broadcast product there (measured: 64 x 64 rows, 175 vs 193 us), longer ones
        by the broadcast product in whole rows (``row_buffer``; measured at I = 256: 379 vs einsum's 656 us)."""
        if self.name == "numpy" and b.shape[-1] < EINSUM_ROW:
            numpy_outer(self.view(out[index], a.shape + b.shape[-1:]), a, b)
            return out
        return self.write(out, index, "multiply", a[:, :, None], b[:, None, :])

    def report_outer_overflow(self, a, b):
        """Make numpy report (to ``np.errstate``, which ``finite_result`` listens to) an overflow that ``outer(a, b)``
        may meet: einsum reports no floating-point events, but an entry ``a[n, j] b[n, i]`` overflows only if the
        product of the largest magnitudes does, and that scalar product reports it (an overflow across two samples
        only costs the full check of the result). Nothing to do on other libraries, whose results are always read."""
        if self.name == "numpy" and a.size and b.size:
            np.max(np.abs(a)) * np.max(np.abs(b))

    def diag(self, values):
        """``(N, n)`` -> ``(N, n, n)``: a stack of diagonal matrices."""
        n = values.shape[-1]
        if self.name == "numpy":  # zeros, then the diagonal through a strided view (np.eye costs more than the work)
            out = np.zeros(values.shape + (n,), dtype=values.dtype)
            out.reshape(values.shape[0], n * n)[:, ::n + 1] = values
            return out
        return self.xp.eye(n, dtype=values.dtype, device=values.device) * values[:, :, None]

    def add_diagonal(self, stack, values):
        """``stack + diag(values)`` for a stack ``(N, n, n)`` and ``values`` ``(N, n)``; on numpy in place (``stack``
        must be a fresh C-contiguous array)."""
        n = values.shape[-1]
        if self.name == "numpy":
            diagonal = stack.reshape(stack.shape[0], n * n)[:, ::n + 1]
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
        return int(free + self.native.cuda.memory_reserved(self.device) - self.native.cuda.memory_allocated(self.device))

    def peak_growth(self, call):
        """``(bytes, method, result)``: the peak device bytes of ``call()`` above those in use before it, from the
        library's own counters (GPU libraries only): torch's CUDA peak statistics, or for cupy an allocation hook on
        its memory pool."""
        self.synchronize()
        if self.name == "torch":
            cuda = self.native.cuda
            cuda.reset_peak_memory_stats(self.device)
            before = cuda.memory_allocated(self.device)
            result = call()
            self.synchronize()
            return cuda.max_memory_allocated(self.device) - before, "torch.cuda.max_memory_allocated", result
        hook = _cupy_peak_hook(self.native)
        with hook:
            result = call()
            self.synchronize()
        return hook.peak, "cupy memory pool (allocation hook: bytes handed out, peak)", result


# ---- whole rows per loop call (numpy) ----------------------------------------------------------------------------
# numpy's ufunc iterator is buffered (``np.getbufsize()`` entries, 8192 by default): for a broadcast product whose
# rows are shorter than the buffer, it copies several rows of the operands into the buffer, runs the loop there and
# copies the result out (numpy gh-17471, gh-13307), where the loop could have written the rows in place. Measured
# here on numpy 2.4, warm 8 MB products: rows of 64 entries 1017 us buffered, 697 us in place; rows of 256 to 2048
# entries 970-1020 against 360-375 us. A buffer no longer than a row stops the copies (a product of this project
# never needs a buffer: its operands have one dtype). Rows under 64 entries gain from the copies, small writes not
# enough to pay for the switch (about 1.5 us).
BUFFERED_ROW = 64
BUFFERED_BYTES = 2**16
EINSUM_ROW = 128  # ``Library.outer``: einsum below this many entries a row, the broadcast product from it on
_UNCHANGED = contextlib.nullcontext()  # the context of a helper below that changes nothing (reusable, shared)


def numpy_outer(target, a, b):
    """``target[..., j, i] = a[..., j] b[..., i]`` on numpy, in place: einsum for rows under ``EINSUM_ROW`` entries,
    else a broadcast product (run it inside ``row_buffer`` / ``buffer_of_rows`` for whole rows)."""
    if b.shape[-1] < EINSUM_ROW:
        np.einsum("...j,...i->...ji", a, b, out=target)
    else:
        np.multiply(a[..., :, None], b[..., None, :], out=target)


def row_buffer(target):
    """``with row_buffer(target):`` numpy's ufunc buffer cut to one row of ``target`` (a multiple of 16 entries,
    numpy's rule) when ``target`` is at least ``BUFFERED_BYTES`` with rows of ``BUFFERED_ROW`` entries or more, so a
    broadcast product into it writes whole rows in place; else nothing changes. Scoped by ``np.errstate`` (the
    floating-point error handling in force is kept) and copied into split writes' threads with the context."""
    row = target.shape[-1] if target.ndim else 0
    if target.nbytes < BUFFERED_BYTES:
        return _UNCHANGED
    return buffer_of_rows(row)


def buffer_of_rows(row):
    """``with buffer_of_rows(row):`` numpy's ufunc buffer cut to ``row`` entries (rounded down to a multiple of 16)
    when ``BUFFERED_ROW <= row`` and the buffer is longer; else nothing changes. For a caller that writes many
    products whose rows have at least ``row`` entries (``row_buffer`` picks it from one target)."""
    if row < BUFFERED_ROW or row >= np.getbufsize():
        return _UNCHANGED
    return _buffer_of(row // 16 * 16)


@contextlib.contextmanager
def _buffer_of(entries):
    with np.errstate():
        np.setbufsize(entries)
        yield


# ---- writes split over threads (numpy) ---------------------------------------------------------------------------
# A write of at least this many bytes is split by rows over the write threads: fresh memory's first touch (page
# faults; on a virtual machine, also the host's) costs more than the arithmetic and is paid per thread, so two threads
# write a fresh 72 MB array in 8.4 ms where one takes 12.2 ms (measured on the 2-core CI machine). A 1 MiB write takes
# 50-100 us, handing work to a thread tens of microseconds; 1 MiB rather than 4 took 0.3-0.5 ms off the P = 3000
# Hessian (its last strips and copies are 1-3 MB).
PARALLEL_BYTES = 2**20

_pinned = None  # the thread count ``pinned_threads`` set, overriding XVAL_THREADS


def write_threads():
    """How many threads a large write is split over: the count ``pinned_threads`` set, else ``XVAL_THREADS`` (by
    default the CPUs this process may run on)."""
    if _pinned is not None:
        return _pinned
    return min(_threads_setting(os.environ.get("XVAL_THREADS")), config.cpus())  # never more threads than CPUs


@functools.lru_cache(maxsize=16)
def _threads_setting(raw):
    return config.threads({} if raw is None else {"XVAL_THREADS": raw})


class pinned_threads:
    """``with pinned_threads(n):`` large writes use ``n`` threads (the benchmarks pin every library's pools alike)."""

    def __init__(self, threads):
        self.threads = threads

    def __enter__(self):
        global _pinned
        self._before, _pinned = _pinned, self.threads
        return self

    def __exit__(self, *exc):
        global _pinned
        _pinned = self._before


_WORKER = "xval-write"
_POOLS = {}  # (workers, pid) -> ThreadPoolExecutor
_POOLS_LOCK = threading.Lock()


def _pool(workers):
    """The pool of ``workers`` write threads of this process, made once (per thread count, which a setting fixes):
    a child forked after the parent used its pool inherits the pool but not its threads, so the key holds the pid."""
    key = (workers, os.getpid())
    pool = _POOLS.get(key)
    if pool is None:
        with _POOLS_LOCK:
            pool = _POOLS.get(key)
            if pool is None:
                pool = _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix=_WORKER)
    return pool


def split(n, body, nbytes):
    """``body(start, stop)`` over contiguous parts of ``range(n)`` that together cover it once: on ``write_threads()``
    threads (the calling one included) when ``nbytes >= PARALLEL_BYTES``, else in one call here.

    Each worker runs in a copy of the caller's context, so numpy's floating-point error state (thread-local; the
    overflow check of ``finite_result`` listens to it) holds in every part. The first exception is raised after
    every part has finished.
    """
    pinned = write_threads()
    threads = min(pinned, n) if nbytes >= PARALLEL_BYTES else 1
    if threads <= 1 or threading.current_thread().name.startswith(_WORKER):  # a part never waits on the pool
        body(0, n)
        return
    bounds = [n * k // threads for k in range(threads + 1)]
    pool, futures, here = _pool(pinned - 1), [], [0]
    for k in range(1, threads):
        try:
            futures.append(pool.submit(contextvars.copy_context().run, body, bounds[k], bounds[k + 1]))
        except RuntimeError:  # the interpreter is shutting down (a user thread still running): no new threads
            here.append(k)
    error = None
    for k in here:
        try:
            body(bounds[k], bounds[k + 1])
        except BaseException as exc:  # noqa: BLE001 - re-raised once the other parts are done
            error = error or exc
    for future in futures:
        try:
            future.result()
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error


def iterator_buffer_bytes(nbytes):
    """Bytes numpy's buffered iterators may hold while a result of ``nbytes`` is written: per thread writing it (the
    write threads from ``PARALLEL_BYTES`` on, else one), a buffer of ``np.getbufsize()`` entries (8 bytes or fewer
    each) for each of a product's three operands (measured: a one-sample Hessian on one thread peaks 190 KB above its
    arrays, 316 KB with a 16-entry buffer against 505 KB with numpy's)."""
    threads = write_threads() if nbytes >= PARALLEL_BYTES else 1
    return threads * 3 * np.getbufsize() * 8


def splits(lib, nbytes):
    """Whether a write of ``nbytes`` on ``lib`` is split over threads."""
    return lib.name == "numpy" and nbytes >= PARALLEL_BYTES and write_threads() > 1


@functools.lru_cache(maxsize=None)
def _blas_controllers():
    """threadpoolctl's controllers of the BLAS libraries loaded (numpy's), found once."""
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


# Products run on one BLAS thread before a split write when they take at most this many floating-point operations
# per byte of the write (``quiet_blas``): one core's products (~20 GFLOP/s) then take less time than the fresh write
# (~5 GB/s), so the spinning workers would cost the write more than the second BLAS thread saves.
QUIET_FLOPS_PER_BYTE = 4


def quiet_blas(lib, nbytes, flops):
    """``with quiet_blas(lib, nbytes, flops):`` BLAS on one thread, restored after, when a write of ``nbytes`` that
    follows will be split over threads (``splits``) and the products inside (``flops``, about) are small beside it
    (``QUIET_FLOPS_PER_BYTE``); else nothing changes (a shared no-op context: small calls pay nothing for it).

    For the small products before a large write: OpenBLAS's workers keep spinning on their cores for a while after
    each multithreaded call, and a spinning worker takes the core a write thread needs. Measured here (per-sample
    gradients, width 256, N = 32, writes only): one write thread 21 ms; two, after multithreaded BLAS calls, 22 ms;
    two, with those calls on one thread, 13 ms. (Switching costs about 2 us.) Large products keep BLAS's threads:
    a wide network's curvature pass before a smaller block would lose more on one thread than the write gains."""
    if not splits(lib, nbytes) or flops > QUIET_FLOPS_PER_BYTE * nbytes:
        return _UNCHANGED
    return _one_blas_thread()


@contextlib.contextmanager
def _one_blas_thread():
    changed = [(blas, blas.num_threads) for blas in _blas_controllers() if blas.num_threads > 1]
    for blas, _ in changed:
        blas.set_num_threads(1)
    try:
        yield
    finally:
        for blas, threads in changed:
            blas.set_num_threads(threads)


def _cupy_peak_hook(cupy):
    """A cupy memory hook that follows the bytes the pool hands out during its ``with`` block and keeps the peak."""
    from cupy.cuda import memory_hook

    class PeakHook(memory_hook.MemoryHook):
        name = "xval_peak"

        def __init__(self):
            self.in_use = self.peak = 0

        def malloc_postprocess(self, **kwargs):
            self.in_use += kwargs["mem_size"]
            self.peak = max(self.peak, self.in_use)

        def free_postprocess(self, **kwargs):
            self.in_use -= kwargs["mem_size"]

    return PeakHook()


def _product_shape(op, a, b):
    """The shape of ``op(a, b)`` for the operands here: broadcasting between arrays of equal ndim, and matmul whose
    batch axes come from one operand (``np.broadcast_shapes`` costs more than a small product)."""
    if op == "multiply":
        return tuple([x if y == 1 else y for x, y in zip(a, b)])
    return (a[:-1] if len(a) >= len(b) else b[:-2] + a[-2:-1]) + b[-1:]


def to_numpy(value):
    """An array of any supported library as a float64 numpy array (a copy from the device; none for numpy float64)."""
    if isinstance(value, (np.ndarray, np.generic, float, int)):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, (tuple, list)):
        return tuple(to_numpy(part) for part in value)
    module = type(value).__module__
    if module.startswith("torch"):
        value = value.detach().to("cpu").numpy()
    elif module.startswith("cupy"):
        value = value.get()
    else:
        value = np.from_dlpack(value)
    return np.asarray(value, dtype=np.float64)


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
            f"XVAL_ARRAY={name} needs array-api-compat, which is not installed; install it (pip install array-api-compat, "
            "or the project's 'arrays' extra) or use XVAL_ARRAY=numpy"
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
                f"XVAL_ARRAY={name} runs on the CPU but XVAL_DEVICE=cuda; use XVAL_ARRAY=cupy or XVAL_ARRAY=torch for the "
                "GPU, or XVAL_DEVICE=cpu"
            )
        if name == "numpy":
            return Library("numpy", np, np, "cpu", "cpu")
        strict = _import("array_api_strict")
        return Library(name, strict, None, strict.Device("CPU_DEVICE"), "cpu")
    if name == "cupy":
        cupy = _import("cupy")
        if device_choice == "cpu":
            raise ConfigError("XVAL_ARRAY=cupy runs on a GPU but XVAL_DEVICE=cpu; use XVAL_DEVICE=cuda or auto, or XVAL_ARRAY=numpy")
        xp = _compat("cupy")
        return Library(name, xp, cupy, cupy.cuda.Device(), f"cuda:{cupy.cuda.Device().id}")
    torch = _import("torch")
    xp = _compat("torch")
    gpu = torch.cuda.is_available()
    if device_choice == "cuda" and not gpu:
        raise ConfigError("XVAL_ARRAY=torch with XVAL_DEVICE=cuda, but torch sees no GPU; use XVAL_DEVICE=cpu or auto")
    device = torch.device("cuda", torch.cuda.current_device()) if gpu and device_choice != "cpu" else torch.device("cpu")
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

