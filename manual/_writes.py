"""How ``manual`` writes its large results, apart from the math: every entry written once, straight into its place
(``out=`` where the library has it), on numpy split by rows over the write threads, with numpy's ufunc buffer cut to
whole rows, and BLAS quietened while a split write follows small products.

The measurements behind each threshold are in ``docs/complexity.md`` ("Writing a result").
"""

import contextlib
import contextvars
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from xval import config


def write(lib, out, index, op, a, b):
    """``out[index] = op(a, b)``, written once; ``op`` is ``"multiply"`` or ``"matmul"``.

    ``op(a, b)`` may have another shape than ``out[index]`` (same number of entries, row-major): the product of
    a layer ``(n_out, n_in)`` written into its flat slice. With ``out=`` the product goes straight into a view of
    ``out`` reshaped to the product's shape (a reshape that splits axes, which never copies).
    """
    if lib.native is None:
        value = getattr(lib.xp, op)(a, b)
        target_shape = out[index].shape
        out[index] = value if value.shape == target_shape else lib.xp.reshape(value, target_shape)
        return out
    target, shape = out[index], _product_shape(op, a.shape, b.shape)
    if lib.name == "numpy":  # the hot path: no wrapper between the product and numpy (a tiny network's calls)
        target = target if target.shape == shape else target.reshape(shape)
        function = np.multiply if op == "multiply" else np.matmul
        if function is np.matmul or target.nbytes < BUFFERED_BYTES and target.nbytes < PARALLEL_BYTES:  # small
            function(a, b, out=target)
            return out
    else:
        target = target if target.shape == shape else lib.view(target, shape)
        getattr(lib.native, op)(a, b, out=target)
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


def product(lib, out, index, shape, a, b):
    """``out[index] = a @ b`` for 2-D ``a`` ``(J, K)`` and ``b`` ``(K, I)``, the product of ``shape`` (``J I``
    entries, row-major), written once. On numpy, while ``out`` is under ``BUFFERED_BYTES`` and ``PARALLEL_BYTES`` (a
    tiny network's results: no threads or buffer to arrange), one ``dot`` into the view: 0.6 us where ``write`` spent
    2-3 us working out the same. Else ``write``: with ``K = 1`` (an outer product) a broadcast product, split over the
    write threads when large, and ``matmul`` (on BLAS's threads) otherwise."""
    if lib.name == "numpy" and out.nbytes < BUFFERED_BYTES and out.nbytes < PARALLEL_BYTES:
        np.dot(a, b, out=out[index].reshape(shape))
        return out
    return write(lib, out, index, "multiply" if a.shape[-1] == 1 else "matmul", a, b)


def assign(lib, out, index, value):
    """``out[index] = value`` (same shape); on numpy split by rows over the write threads when large."""
    if lib.name != "numpy" or value.nbytes < PARALLEL_BYTES:
        out[index] = value
        return out
    target = out[index]

    def part(start, stop):
        target[start:stop] = value[start:stop]

    split(target.shape[0], part, target.nbytes)
    return out


def outer(lib, out, index, a, b):
    """``out[index] = a[:, :, None] * b[:, None, :]`` for ``a`` ``(N, J)`` and ``b`` ``(N, I)``: the outer product of
    every row pair, row-major, written once. On numpy, rows shorter than ``EINSUM_ROW`` entries are written by
    ``einsum``, whose loop beats a broadcast product there (measured: 64 x 64 rows, 175 vs 193 us), longer ones
    by the broadcast product in whole rows (``row_buffer``; measured at I = 256: 379 vs einsum's 656 us)."""
    if lib.name == "numpy" and b.shape[-1] < EINSUM_ROW:
        numpy_outer(lib.view(out[index], a.shape + b.shape[-1:]), a, b)
        return out
    return write(lib, out, index, "multiply", a[:, :, None], b[:, None, :])


def report_outer_overflow(lib, a, b):
    """Make numpy report (to ``np.errstate``, which ``finite_result`` listens to) an overflow that ``outer(a, b)``
    may meet: einsum reports no floating-point events, but an entry ``a[n, j] b[n, i]`` overflows only if the
    product of the largest magnitudes does, and that scalar product reports it (an overflow across two samples
    only costs the full check of the result). Nothing to do on other libraries, whose results are always read."""
    if lib.name == "numpy" and a.size and b.size:
        np.max(np.abs(a)) * np.max(np.abs(b))


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


def _product_shape(op, a, b):
    """The shape of ``op(a, b)`` for the operands here: broadcasting between arrays of equal ndim, and matmul whose
    batch axes come from one operand (``np.broadcast_shapes`` costs more than a small product)."""
    if op == "multiply":
        return tuple([x if y == 1 else y for x, y in zip(a, b)])
    return (a[:-1] if len(a) >= len(b) else b[:-2] + a[-2:-1]) + b[-1:]
