"""Peak memory of one call, by one method per device.

CPU: the growth of the resident set over the call, measured in place. After ``malloc_trim`` the kernel's
high-water mark is reset (``/proc/self/clear_refs`` <- 5); the call runs; the peak is ``VmHWM`` minus the
``VmRSS`` before it. glibc is told to serve large blocks by ``mmap`` at a fixed threshold, so memory freed by
an earlier call goes back to the kernel instead of hiding the next call's growth. Those thresholds stay for the
sweep, whose points are each timed and then measured, so its times of calls that allocate blocks of 256 KiB to
32 MiB include their page faults, which weigh on each engine differently (``STEADY_THRESHOLDS``);
``settle_allocator`` sets them to where glibc's own adjustment takes a process that frees large arrays, before the
ratio rows are timed.

GPU: ``torch.cuda.max_memory_allocated`` after a reset (torch and the peers), growth of
``memory_stats()['peak_bytes_in_use']`` (jax, whose peak cannot be reset: when a call does not raise the process's
peak, the memory XLA plans for it instead, labelled so).
"""

import ctypes
import ctypes.util
import re

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# (mmap threshold, trim threshold) in bytes. While a call's peak is measured: blocks from 256 KiB on are mapped
# and unmapped whole, and more than 1 MiB free at the heap's top goes back, so freed memory leaves the resident set.
MEASURING_THRESHOLDS = (256 * 1024, 1024 * 1024)
# After the measurements: glibc's own adjustment (which any mallopt call turns off for good) raises the mmap
# threshold to the largest block freed, up to 32 MiB on 64-bit systems, with the trim threshold at twice it; a
# process that frees arrays of these sizes settles there. Left at MEASURING_THRESHOLDS, every block of 256 KiB to
# 32 MiB is freshly mapped and faulted in: a 1.5 MiB np.empty + fill took 586 us against 28 us, and manual's
# gradient at width 256, depth 3, N = 32 1.40 ms against 0.64 ms in a process that had measured nothing. At one
# sample, depth 3, width 1024, timed at the measuring thresholds against these: manual's gradient 4.7 ms against
# 3.0, jax's 16.1 against 6.4, torch's 33.2 against 7.3 (torch's GGN diagonal at width 32: 378 ms against 186). Set
# back to these between the sweep's points, they made the peaks measured next depend on what the timed calls left in
# the heap (torch's GGN diagonal at |W| = 3,168: 61 MB against 6.7; jax's 24 MiB gradient at width 1024: 0.03,
# 16 or 24 MiB by what ran before), so the sweep times at the measuring thresholds and its times carry those faults.
STEADY_THRESHOLDS = (32 * 2**20, 64 * 2**20)
_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
        except OSError:
            _LIBC = False
    return _LIBC


def _set_thresholds(libc, thresholds):
    mmap_threshold, trim_threshold = thresholds
    libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)


def _status():
    with open("/proc/self/status") as handle:
        text = handle.read()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) * 1024 for key in ("VmRSS", "VmHWM")}


def cpu_method_available():
    """Whether this kernel lets a process reset its own peak RSS (Linux ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        _status()
        return True
    except (OSError, AttributeError):
        return False


def cpu_peak_growth(call):
    """Bytes by which the resident set peaked above its level just before ``call()``; ``(bytes, result)``."""
    libc = _libc()
    if libc:
        _set_thresholds(libc, MEASURING_THRESHOLDS)
        libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status()["VmRSS"]
    result = call()
    return max(0, _status()["VmHWM"] - before), result


def settle_allocator():
    """After the last peak measurement of a run, before calls are timed on their own: glibc's thresholds where a
    process that never measured memory would have them (``STEADY_THRESHOLDS``); a no-op where no peak was measured."""
    if _LIBC:
        _set_thresholds(_LIBC, STEADY_THRESHOLDS)


def gpu_peak_growth(call, engine):
    """``(bytes or None, method, result)``: the peak device bytes of ``call()`` on the GPU, for torch-based engines
    and jax.

    jax's ``peak_bytes_in_use`` cannot be reset: it shows a call's peak only when the call raises the process's
    peak. When it does not (a smaller call after a larger one), the figure is the memory XLA plans for the call,
    temporaries plus output (``call.compiled_bytes()``, which the jax engine's staged calls carry), and the method
    says so.
    """
    if engine == "jax":
        import jax

        dev = jax.devices()[0]
        stats = dev.memory_stats() or {}
        before, in_use = stats.get("peak_bytes_in_use"), stats.get("bytes_in_use", 0)
        result = call()
        after = (dev.memory_stats() or {}).get("peak_bytes_in_use")
        if before is not None and after is not None and after > before:
            return after - in_use, "jax peak_bytes_in_use", result
        planned = getattr(call, "compiled_bytes", None)
        if planned is None:
            return None, "jax peak_bytes_in_use (not raised by this call)", result
        return planned(), "jax compiled memory_analysis (temp + output; the peak counter was not raised)", result
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    in_use = torch.cuda.memory_allocated()
    result = call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - in_use, "torch.cuda.max_memory_allocated", result


def peak_growth(call, engine, device):
    """``(bytes, method, result)`` by the method for ``device`` (``manual`` is numpy on the CPU everywhere)."""
    if device == "cuda" and engine != "manual":
        return gpu_peak_growth(call, engine)
    if not cpu_method_available():  # not Linux: time the point all the same, without a memory figure
        return None, "unavailable (needs Linux /proc/self/clear_refs)", call()
    nbytes, result = cpu_peak_growth(call)
    return nbytes, "rss-growth (clear_refs + VmHWM)", result


def out_of_memory(exc):
    """Whether ``exc`` says that memory ran out: numpy's ``MemoryError`` (the suite's ``MemoryGuardError``, a refusal
    before allocating, is one too: callers that tell them apart check it first), torch's and cupy's
    ``OutOfMemoryError`` (CUDA), or XLA's ``RESOURCE_EXHAUSTED`` (jax)."""
    text = str(exc)
    return (
        isinstance(exc, MemoryError)
        or "OutOfMemory" in type(exc).__name__
        or "RESOURCE_EXHAUSTED" in text
        or "out of memory" in text.lower()
    )


def release_device_memory():
    """Give the blocks cached by torch's caching allocator and cupy's pool back to the device (before each engine of
    a GPU run), so that one engine's cache does not leave the next short. jax's own pool (XLA's BFC allocator, with
    ``XLA_PYTHON_CLIENT_PREALLOCATE=false``) keeps what it freed and cannot be emptied from outside; it only grows to
    the largest call jax has made."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            cupy.get_default_memory_pool().free_all_blocks()
        except Exception:  # noqa: BLE001 - a cupy without a usable GPU has nothing cached
            pass
