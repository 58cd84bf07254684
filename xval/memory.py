"""The memory guard: refuse a call whose whole working memory (not only its result) will not fit, before allocating.

The limit is the smaller of the memory the operating system says is available (``MemAvailable`` from
``/proc/meminfo``; elsewhere ``psutil`` if installed, else ``os.sysconf``) and the optional
``XVAL_MAX_BYTES`` cap (``xval.config``). ``fits`` answers "would this fit?" without raising, for
benchmarks that want to skip sizes rather than fail.
"""

import os

import numpy as np

from . import config
from .errors import MemoryGuardError


def available_bytes():
    """Bytes the operating system can hand out now, or ``None`` when it cannot be determined."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def limit(env=None, available=None):
    """``(bytes, reason)``: the most a dense array may take and where that limit comes from.

    ``available`` is the free memory of the device the array goes to (a GPU's, from its library), when not the
    host's. ``bytes`` is ``None`` when neither the available memory nor a cap is known.
    """
    limits = []
    where = "of memory available" if available is None else "free on the device"
    available = available_bytes() if available is None else available
    if available is not None:
        limits.append((available, f"{available} bytes ({_human(available)}) {where}"))
    cap = config.max_bytes(env)
    if cap is not None:
        limits.append((cap, f"{cap} bytes ({_human(cap)}) allowed by XVAL_MAX_BYTES"))
    if not limits:
        return None, "no known limit"
    return min(limits)


def fits(nbytes, env=None, available=None):
    """Whether ``nbytes`` fit under ``limit()``."""
    allowed, _ = limit(env, available)
    return allowed is None or nbytes <= allowed


def check(nbytes, what, detail="", env=None, available=None):
    """Raise ``MemoryGuardError`` unless ``nbytes`` fit; ``what`` names the array, e.g. ``"the (P, P) Hessian"``,
    and ``detail`` (optional) says how ``nbytes`` splits up.

    Call it before allocating: nothing has been allocated when it raises. Returns ``nbytes``.
    """
    allowed, reason = limit(env, available)
    if allowed is not None and nbytes > allowed:
        detail = f": {detail}" if detail else ""
        raise MemoryGuardError(
            f"{what} needs {nbytes} bytes ({_human(nbytes)}{detail}), but only {reason}; "
            "use a smaller network or batch, "
            "compute single blocks with hessian_block, use hvp (which never forms the Hessian), "
            "or raise XVAL_MAX_BYTES if it is set too low"
        )
    return nbytes


def itemsize(dtype):
    return np.dtype(dtype).itemsize


def result_bytes(cells, dtype):
    """Bytes of a dense result of ``cells`` entries in ``dtype``, plus its float64 copy when ``dtype`` is narrower
    (every engine returns float64)."""
    item = itemsize(dtype)
    return cells * item + (cells * 8 if item != 8 else 0)


def tape_bytes(net, n_samples):
    """``N`` times the entries of every activation one reverse pass keeps (the input and each layer's output)."""
    return n_samples * net.activation_entries * itemsize(net.dtype)


def peak_parts(quantity, net, n_samples, args=None, factor=1.0, first_call=0, in_flight=None):
    """``(result, working)`` bytes of an engine's call of ``quantity`` (a ``contract.Quantity``) on ``n_samples``
    samples: its result (``Quantity.result_cells``), and ``factor x (max(tangents, 1) x tape + result)`` plus
    ``first_call``, the model every engine sizes itself by, with its own ``factor`` and ``first_call`` (measured:
    each engine states them beside its code). An autodiff engine pushes ``Quantity.tangents`` tangents (one per
    column of a block, ``P`` for the Hessian) through a reverse pass of ``tape_bytes``, or at most ``in_flight`` at
    a time where it splits them (a diagonal read off unit-vector products, a chunk at a time); a hand-written one
    keeps its intermediates, a few tapes, beside the result."""
    cells = quantity.result_cells(net, n_samples, args)
    tangents = quantity.tangents(net, n_samples, args or {})
    tangents = max(min(tangents, in_flight) if in_flight else tangents, 1)
    work = tangents * tape_bytes(net, n_samples) + cells * itemsize(net.dtype)
    return result_bytes(cells, net.dtype), int(factor * work) + int(first_call)


def _human(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
