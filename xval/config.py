"""The one place that reads the ``XVAL_*`` environment variables (for every package of the suite).

- ``XVAL_BACKEND``: comma list of engines (default ``manual,torch,jax``): built-in or registered names, module
  names or ``.py`` paths (``xval.engines`` resolves them).
- ``XVAL_DEVICE``: ``cpu``, ``cuda`` or ``auto`` (default; the GPU when torch/jax see one).
- ``XVAL_DTYPE``: ``float64`` (default) or ``float32``.
- ``XVAL_MAX_BYTES``: optional cap on any call's whole working memory, in bytes (``2e9``).
- ``XVAL_ARRAY``: the array library ``manual`` computes with: ``numpy``, ``cupy``, ``torch`` or ``array_api_strict``
  (default: numpy, or on ``XVAL_DEVICE=cuda`` cupy when importable, else torch; ``manual.arrays`` resolves it).
- ``XVAL_THREADS``: how many threads ``manual`` (on numpy) splits a large result's writes over (default: the CPUs
  this process may run on; 1 writes on the calling thread only).
- ``XVAL_ARBITER_DIGITS``: the high-precision arbiter's working precision in decimal digits (default 40, at least
  20: float64 holds 16, and the arbiter checks itself at twice this precision).

Each function takes an optional mapping instead of ``os.environ``, so that callers and tests can pass
their own settings.
"""

import math
import os

from .errors import ConfigError

ENGINE_NAMES = ("manual", "torch", "jax")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float64", "float32")
ARRAY_LIBRARIES = ("numpy", "cupy", "torch", "array_api_strict")
# What to install for each array library (the ConfigError of a missing one says it).
ARRAY_INSTALL = {
    "numpy": "pip install numpy",
    "cupy": "pip install cupy-cuda12x (the wheel matching the machine's CUDA version)",
    "torch": "pip install torch",
    "array_api_strict": "pip install array-api-strict",
}
ARBITER_DIGITS = (20, 1000)  # the valid range of XVAL_ARBITER_DIGITS


def _read(env, name, default):
    env = os.environ if env is None else env
    value = env.get(name, "").strip()
    return value if value else default


def _whole_number(raw, digits=18):
    """``raw`` as an int when it is plain ASCII digits (no sign, no ``_``, no other scripts' digits, at most
    ``digits`` of them), else ``None``."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > digits:
        return None
    return int(raw)


def backends(env=None):
    """Engines named by ``XVAL_BACKEND``, in the order given, without repeats (resolved by ``xval.engines.load``)."""
    raw = _read(env, "XVAL_BACKEND", ",".join(ENGINE_NAMES))
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if not names:
        raise ConfigError(
            f"XVAL_BACKEND={raw!r} names no engine; give a comma list of engines: built-in names "
            f"({', '.join(ENGINE_NAMES)}), module names or .py paths, e.g. XVAL_BACKEND=manual,torch,path/to/engine.py"
        )
    return list(dict.fromkeys(names))


def device(env=None):
    """``cpu``, ``cuda`` or ``auto`` from ``XVAL_DEVICE``."""
    value = _read(env, "XVAL_DEVICE", "auto").lower()
    if value not in DEVICES:
        raise ConfigError(f"XVAL_DEVICE={value!r} is not valid; use one of: {', '.join(DEVICES)}")
    return value


def device_present(env=None):
    """``device(env)``, after checking that ``cuda`` is asked for only where torch or jax sees a GPU (each imported
    only then, and only when installed): otherwise every reference would refuse every call."""
    value = device(env)
    if value == "cuda" and not gpu_seen():
        raise ConfigError(
            "XVAL_DEVICE=cuda but neither torch nor jax sees a GPU here; use XVAL_DEVICE=cpu, or auto "
            "(the GPU when one is seen)"
        )
    return value


def gpu_seen():
    """Whether torch or jax sees a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    try:
        import jax

        return bool(jax.devices("gpu"))
    except (ImportError, RuntimeError):
        return False


def dtype(env=None):
    """``float64`` or ``float32`` from ``XVAL_DTYPE``."""
    value = _read(env, "XVAL_DTYPE", "float64").lower()
    if value not in DTYPES:
        raise ConfigError(f"XVAL_DTYPE={value!r} is not valid; use one of: {', '.join(DTYPES)}")
    return value


# Unit suffixes are refused with the number of bytes they stand for: a plain number cannot be misread (10GB and
# 10GiB differ by 7%), and the message gives the exact value to write instead.
BYTE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_MAX_BYTES_FIX = "e.g. XVAL_MAX_BYTES=2e9 or 2000000000"


def _bad_bytes(name, raw, why):
    return ConfigError(f"{name}={raw!r} is not valid; give a positive number of bytes ({why}), {_MAX_BYTES_FIX}")


def parse_bytes(raw, name="XVAL_MAX_BYTES"):
    """``raw`` (``"2e9"``, ``"2000000000"``) as a whole number of bytes ``>= 1``.

    Refused with a ``ConfigError`` naming ``name``: text that is not a number, a number with a unit (``10GB``: the
    message says how many bytes each reading means), non-finite values (``inf``, ``1e400``), zero or negative values,
    and fractions of a byte (``1.9``: a cap of 1 byte is surely not meant).
    """
    text = raw.strip().lower().replace(" ", "")
    for suffix in sorted(BYTE_UNITS, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)]:
            try:
                count = float(text[: -len(suffix)])
            except ValueError:
                break
            meant = count * BYTE_UNITS[suffix]
            raise _bad_bytes(
                name,
                raw,
                f"a plain number without a unit: {raw.strip()} is {meant:.12g} bytes, so write {name}={meant:.12g}",
            )
    try:
        value = float(text)
    except ValueError:
        raise _bad_bytes(name, raw, "it is not a number") from None
    if not math.isfinite(value):
        raise _bad_bytes(name, raw, f"it is not finite; for no cap, unset {name}")
    if value < 1:
        raise _bad_bytes(name, raw, "it is below 1 byte")
    if not value.is_integer():
        raise _bad_bytes(name, raw, f"{value!r} bytes is not a whole number")
    return int(value)


def max_bytes(env=None):
    """The ``XVAL_MAX_BYTES`` cap as an int (``parse_bytes``), or ``None`` when unset."""
    raw = _read(env, "XVAL_MAX_BYTES", None)
    return None if raw is None else parse_bytes(raw)


def array_library(env=None):
    """The array library named by ``XVAL_ARRAY`` (one of ``ARRAY_LIBRARIES``), or ``None`` when unset."""
    raw = _read(env, "XVAL_ARRAY", None)
    if raw is None:
        return None
    value = raw.lower().replace("-", "_")
    if value not in ARRAY_LIBRARIES:
        raise ConfigError(
            f"XVAL_ARRAY={raw!r} is not valid; use one of: {', '.join(ARRAY_LIBRARIES)} (numpy is the default; "
            f"each needs its package installed: {'; '.join(f'{k}: {v}' for k, v in ARRAY_INSTALL.items())})"
        )
    return value


def arbiter_digits(env=None):
    """The arbiter's precision in decimal digits from ``XVAL_ARBITER_DIGITS`` (default 40), a whole number in
    20..1000."""
    raw = _read(env, "XVAL_ARBITER_DIGITS", "40")
    low, high = ARBITER_DIGITS
    value = _whole_number(raw)
    if value is None or not low <= value <= high:
        raise ConfigError(
            f"XVAL_ARBITER_DIGITS={raw!r} is not valid; give a whole number of decimal digits from {low} to {high} "
            "(float64 holds about 16; the default 40 leaves 24 for cancellation), e.g. XVAL_ARBITER_DIGITS=60"
        )
    return value


def threads(env=None):
    """The thread count of ``manual``'s large writes from ``XVAL_THREADS``: a whole number >= 1, by default the CPUs
    this process may run on."""
    raw = _read(env, "XVAL_THREADS", None)
    if raw is None:
        return cpus()
    value = _whole_number(raw)
    if value is None or not 1 <= value <= MAX_THREADS:
        raise ConfigError(
            f"XVAL_THREADS={raw!r} is not valid; give a whole number of threads from 1 to {MAX_THREADS}, in plain "
            f"digits (1 writes on the calling thread only; unset, it is the {cpus()} CPUs this process may use; more "
            "than the CPUs are used as the CPUs), e.g. XVAL_THREADS=2"
        )
    return value


MAX_THREADS = 4096


def cpus():
    """The CPUs this process may run on (its affinity where the system tells it, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
