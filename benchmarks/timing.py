"""Wall-clock timing: warm-up excluded, the median of several repeats with min and max (``time_call``), and two calls
against each other in interleaved pairs, their ratio the median of the pairs' ratios with its spread (``time_pairs``).

The timed calls wait for their own device work (the engines' staged calls synchronise), so the timed region
holds the whole computation.
"""

import gc
import math
import statistics
import time


def _once(call, clock=time.perf_counter):
    start = clock()
    call()
    return clock() - start


def _numbers(calls, firsts, min_repeat_s, max_number, jitted, clock):
    """How many times each call runs per timed repeat, so that a repeat lasts at least ``min_repeat_s``."""
    numbers = []
    for call, warm in zip(calls, firsts):
        if jitted or warm < 10 * min_repeat_s:
            # Calibrate on a warm run (the first may include compilation); slow eager calls need no calibration.
            warm = _once(call, clock)
        numbers.append(1 if warm >= min_repeat_s else min(max_number, max(1, int(min_repeat_s / max(warm, 1e-7)) + 1)))
    return numbers


class _no_gc:
    """As timeit does: a garbage collection pass (0.1 s and more with torch and jax loaded) is not the call's."""

    def __enter__(self):
        self.collecting = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.collecting:
            gc.enable()


def time_calls(calls, repeats=5, min_repeat_s=0.02, max_number=1000, first=None, jitted=False):
    """Time each of ``calls``, in turn within every repeat; a list of results, one per call (see ``time_call``).

    Timing in turn, starting each repeat one call further on, gives calls that allocate large arrays the same
    allocator and page state (on a virtual machine the first touch of fresh memory, or the compaction behind a
    fresh huge page, can cost several times the writing itself, and falls on whichever call allocates first). Each
    call's first run is its warm-up (and jit compilation), timed apart and excluded; ``first`` lists those seconds
    when the caller already made the warm-up calls, ``jitted`` says that they compiled.
    """
    firsts = [_once(call) for call in calls] if first is None else list(first)
    numbers = _numbers(calls, firsts, min_repeat_s, max_number, jitted, time.perf_counter)
    samples = [[] for _ in calls]
    with _no_gc():
        for repeat in range(repeats):
            first_in_turn = repeat % len(calls)  # rotate, so that no call always meets the state the others left
            for index in [*range(first_in_turn, len(calls)), *range(first_in_turn)]:
                call, number = calls[index], numbers[index]
                start = time.perf_counter()
                for _ in range(number):
                    call()
                samples[index].append((time.perf_counter() - start) / number)
    return [
        {
            "median": statistics.median(out),
            "min": min(out),
            "max": max(out),
            "first_call": warm,
            "number": number,
            "repeats": repeats,
        }
        for out, warm, number in zip(samples, firsts, numbers)
    ]


MIN_PAIRS = 5
MAX_PAIRS = 25
SPREAD_LIMIT = 0.10  # more pairs while the interquartile range of the pairs' ratios exceeds this share of their median


def ratio_summary(ratios):
    """The median of per-pair ratios and their spread: ``{"ratio", "ratio_q1", "ratio_q3", "ratio_min", "ratio_max",
    "pairs"}`` (``q1``, ``q3``: the quartiles, statistics.quantiles' inclusive method)."""
    ratios = sorted(ratios)
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {
        "ratio": statistics.median(ratios),
        "ratio_q1": q1,
        "ratio_q3": q3,
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
        "pairs": len(ratios),
    }


def relative_spread(summary):
    """The interquartile range of the ratios over their median."""
    return (summary["ratio_q3"] - summary["ratio_q1"]) / summary["ratio"] if summary["ratio"] > 0 else math.inf


def time_pairs(
    call_a,
    call_b,
    min_pairs=MIN_PAIRS,
    max_pairs=MAX_PAIRS,
    spread_limit=SPREAD_LIMIT,
    budget_s=None,
    min_repeat_s=0.02,
    max_number=1000,
    first=None,
    jitted=(False, False),
    clock=time.perf_counter,
):
    """Time ``call_a`` against ``call_b`` in interleaved pairs, A B, then B A, and so on: each pair gives one ratio
    ``seconds of a / seconds of b``, its two halves timed moments apart on the same state of the machine, so that a
    busy moment slows both halves of one pair instead of one contender's whole figure.

    ``min_pairs`` pairs at least; then more, up to ``max_pairs``, while the ratios' interquartile range exceeds
    ``spread_limit`` times their median and the pairs so far took less than ``budget_s`` seconds (``None``: no
    extra pairs). Each half runs its call ``number`` times, so that it lasts ``min_repeat_s`` at least; ``first``:
    the seconds of the warm-up calls when the caller already made them (``jitted``: per call, that they compiled).

    Returns ``ratio_summary`` of the pairs, plus ``ratios`` (each pair's, in order) and ``a``, ``b``: each call's
    ``median`` and ``min`` seconds per call over the pairs, ``number`` and ``first_call``.
    """
    calls = (call_a, call_b)
    firsts = [_once(call, clock) for call in calls] if first is None else list(first)
    numbers = [
        _numbers([call], [warm], min_repeat_s, max_number, jit, clock)[0]
        for call, warm, jit in zip(calls, firsts, jitted)
    ]
    seconds, ratios = ([], []), []
    began = clock()
    with _no_gc():
        while True:
            pair = [0.0, 0.0]
            for index in (0, 1) if len(ratios) % 2 == 0 else (1, 0):  # alternate which goes first
                start = clock()
                for _ in range(numbers[index]):
                    calls[index]()
                pair[index] = (clock() - start) / numbers[index]
            for index in (0, 1):
                seconds[index].append(pair[index])
            ratios.append(pair[0] / pair[1] if pair[1] > 0 else math.inf)
            if len(ratios) < min_pairs:
                continue
            if len(ratios) >= max_pairs or budget_s is None or clock() - began >= budget_s:
                break
            if relative_spread(ratio_summary(ratios)) <= spread_limit:
                break
    out = ratio_summary(ratios)
    out["ratios"] = ratios
    for name, index in (("a", 0), ("b", 1)):
        out[name] = {
            "median": statistics.median(seconds[index]),
            "min": min(seconds[index]),
            "number": numbers[index],
            "first_call": firsts[index],
        }
    return out


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
    xla = (
        "XLA (jax) uses its own pool of the same cores"
        if threads == cores
        else (f"XLA (jax) cannot be pinned and uses its own pool of all {cores} cores")
    )
    return f"threads: {threads} for {what}: BLAS/OpenMP pools, torch and manual's large writes pinned; {xla}"
