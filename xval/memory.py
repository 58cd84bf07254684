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
            f"{what} needs {nbytes} bytes ({_human(nbytes)}{detail}), but only {reason}; use a smaller network or batch, "
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


# Peak growth of a call, beyond its result, divided by (tangents x tape) -- the model of ``peak_bytes`` -- measured
# by scripts/measure_peaks.py on a 2-core CPU (first call of each shape, jax's compile included) and rounded up:
# torch hessian_block 1.5-5.0, hessian 2.6-2.7, per_sample_gradients 1.3-1.4; jax 1.5-2.1, 2.9-3.2, 1.05;
# manual per_sample_gradients 1.01 of its two copies. The constant covers what a first call allocates whatever
# the size (autodiff bookkeeping, XLA's compile): 80-120 MiB measured.
PEAK_FACTORS = {
    ("torch_ref", "hessian_block"): 5.5, ("torch_ref", "hessian"): 3.3, ("torch_ref", "per_sample_gradients"): 1.7,
    ("jax_ref", "hessian_block"): 2.3, ("jax_ref", "hessian"): 3.8, ("jax_ref", "per_sample_gradients"): 1.2,
    ("manual", "per_sample_gradients"): 1.2,
}
# manual: numpy's ufunc buffers (8192 entries per operand) when a broadcast product is written into a strided view
# of the result, measured at 0.2-0.3 MiB whatever the size.
FIRST_CALL_BYTES = {"torch_ref": 128 * 2**20, "jax_ref": 128 * 2**20, "manual": 2**19}


def tape_bytes(net, n_samples):
    """``N sum_l n_l`` entries: the activations one reverse pass keeps for ``n_samples`` samples."""
    return n_samples * sum(net.sizes) * itemsize(net.dtype)


def peak_bytes(engine, quantity, net, n_samples, l=None, m=None):
    """``sum(peak_parts(...))``."""
    return sum(peak_parts(engine, quantity, net, n_samples, l, m))


def peak_parts(engine, quantity, net, n_samples, l=None, m=None):
    """``(result, working)`` bytes: the peak estimate of ``engine`` (``torch_ref``, ``jax_ref``, or ``manual`` for ``per_sample_gradients``) for
    ``quantity``: its result, plus ``PEAK_FACTORS x tangents x tape`` and ``FIRST_CALL_BYTES``. Forward-over-reverse
    (``jacfwd(jacrev)``, ``hessian``) pushes one tangent per column (``P_m`` for a block, ``P`` for the Hessian)
    through a reverse pass of ``tape_bytes``; per-sample gradients keep ``N x P`` entries beside the tape."""
    counts = net.layer_param_counts
    if quantity == "hessian_block":
        cells, work = counts[l] * counts[m], counts[m] * tape_bytes(net, n_samples)
    elif quantity == "hessian":
        cells, work = net.n_params**2, net.n_params * tape_bytes(net, n_samples)
    else:
        cells = n_samples * net.n_params
        work = cells * itemsize(net.dtype) + tape_bytes(net, n_samples)
    return result_bytes(cells, net.dtype), int(PEAK_FACTORS[engine, quantity] * work) + FIRST_CALL_BYTES[engine]


def _human(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
