"""Wall-clock timing: warm-up excluded, the median of several repeats with min and max.

The timed calls wait for their own device work (the engines' staged calls synchronise), so the timed region
holds the whole computation.
"""
import gc
import statistics
import time


def _once(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def time_calls(calls, repeats=5, min_repeat_s=0.02, max_number=1000, first=None, jitted=False):
    """Time each of ``calls``, in turn within every repeat; a list of results, one per call (see ``time_call``).

    Timing in turn, starting each repeat one call further on, gives calls that allocate large arrays the same
    allocator and page state (on a virtual machine the first touch of fresh memory, or the compaction behind a
    fresh huge page, can cost several times the writing itself, and falls on whichever call allocates first). Each call's first run is
    its warm-up (and jit compilation), timed apart and excluded; ``first`` lists those seconds when the caller
    already made the warm-up calls, ``jitted`` says that they compiled.
    """
    firsts = [_once(call) for call in calls] if first is None else list(first)
    numbers = []
    for call, warm in zip(calls, firsts):
        if jitted or warm < 10 * min_repeat_s:
            # Calibrate on a warm run (the first may include compilation); slow eager calls need no calibration.
            warm = _once(call)
        numbers.append(1 if warm >= min_repeat_s else min(max_number, max(1, int(min_repeat_s / max(warm, 1e-7)) + 1)))
    samples = [[] for _ in calls]
    collecting = gc.isenabled()
    gc.disable()  # as timeit does: a garbage collection pass (0.1 s and more with torch and jax loaded) is not the call's
    try:
        for repeat in range(repeats):
            first_in_turn = repeat % len(calls)  # rotate, so that no call always meets the state the others left
            for index in [*range(first_in_turn, len(calls)), *range(first_in_turn)]:
                call, number = calls[index], numbers[index]
                start = time.perf_counter()
                for _ in range(number):
                    call()
                samples[index].append((time.perf_counter() - start) / number)
    finally:
        if collecting:
            gc.enable()
    return [
        {"median": statistics.median(out), "min": min(out), "max": max(out), "first_call": warm, "number": number,
         "repeats": repeats}
        for out, warm, number in zip(samples, firsts, numbers)
    ]


def time_call(call, repeats=5, min_repeat_s=0.02, max_number=1000, first=None, jitted=False):
    """Time ``call()``; its first run is the warm-up (and jit compilation), timed apart and excluded.

    A repeat runs ``call`` ``number`` times, ``number`` chosen so that a repeat lasts at least
    ``min_repeat_s`` (short calls are otherwise below the clock's noise). Returns seconds per call:
    ``median``, ``min``, ``max`` over ``repeats`` repeats, plus ``first_call`` (warm-up), ``number`` and ``repeats``.
    Pass ``first`` (seconds) when the caller already made the warm-up call; ``jitted`` when that call compiled.
    """
    return time_calls([call], repeats, min_repeat_s, max_number, None if first is None else [first], jitted)[0]


def default_threads():
    """The thread count every timed row runs on unless told otherwise: the physical cores (XLA, which cannot be
    pinned once jax is imported, uses them all, so this is the one count every library shares)."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class pinned_threads:
    """``with pinned_threads(n) as pools:`` BLAS/OpenMP pools (threadpoolctl), torch's intra-op threads and manual's
    write threads (``manual.arrays.pinned_threads``) at ``n``, restored on exit; ``pools`` describes them
    (``openblas=2, openmp=2, torch=2, manual writes=2``)."""

    def __init__(self, threads):
        self.threads = threads

    def __enter__(self):
        from threadpoolctl import threadpool_info, threadpool_limits

        from manual import arrays

        self._writes = arrays.pinned_threads(self.threads)
        self._writes.__enter__()
        self._limits = threadpool_limits(limits=self.threads)
        self._limits.__enter__()
        self._torch = None
        try:
            import torch

            self._torch = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        except ImportError:
            pass
        pools = sorted({f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info()})
        if self._torch is not None:
            pools.append(f"torch={self.threads}")
        pools.append(f"manual writes={self.threads}")
        return ", ".join(pools)

    def __exit__(self, *exc):
        if self._torch is not None:
            import torch

            torch.set_num_threads(self._torch)
        self._writes.__exit__(*exc)
        return self._limits.__exit__(*exc)


def threads_line(threads, what):
    """The one line that states the thread count of ``what``, and whether XLA (jax's own pool) matches it."""
    cores = default_threads()
    xla = "XLA (jax) uses its own pool of the same cores" if threads == cores else (
        f"XLA (jax) cannot be pinned and uses its own pool of all {cores} cores")
    return f"threads: {threads} for {what}: BLAS/OpenMP pools, torch and manual's large writes pinned; {xla}"
