"""Wall-clock timing of one call: warm-up excluded, device synchronised inside the timed region, the median of
several repeats with min and max."""
import statistics
import time


def device_sync(engine, device):
    """A function that waits for the engine's queued device work (a no-op on the CPU).

    Engines return numpy arrays, which already waits for the result; the explicit sync keeps the timed region
    honest for work an engine leaves queued after that copy.
    """
    if device != "cuda" or engine == "manual":
        return lambda: None
    if engine == "jax":
        import jax

        return lambda: jax.effects_barrier()
    import torch

    return torch.cuda.synchronize


def time_call(call, sync=lambda: None, repeats=5, min_repeat_s=0.02, max_number=1000, first=None, jitted=False):
    """Time ``call()``; its first run is the warm-up (and jit compilation), timed apart and excluded.

    A repeat runs ``call`` ``number`` times, ``number`` chosen so that a repeat lasts at least
    ``min_repeat_s`` (short calls are otherwise below the clock's noise). Returns seconds per call:
    ``median``, ``min``, ``max`` over ``repeats`` repeats, plus ``first_call`` (warm-up), ``number`` and ``repeats``.
    Pass ``first`` (seconds) when the caller already made the warm-up call; ``jitted`` when that call compiled.
    """
    if first is None:
        start = time.perf_counter()
        call()
        sync()
        first = time.perf_counter() - start
    warm = first
    if jitted or first < 10 * min_repeat_s:
        # Calibrate on a warm run (the first may include compilation); slow eager calls need no calibration.
        start = time.perf_counter()
        call()
        sync()
        warm = time.perf_counter() - start
    number = 1 if warm >= min_repeat_s else min(max_number, max(1, int(min_repeat_s / max(warm, 1e-7)) + 1))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            call()
        sync()
        samples.append((time.perf_counter() - start) / number)
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "first_call": first,
        "number": number,
        "repeats": repeats,
    }
