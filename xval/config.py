"""The one place that reads the ``XVAL_*`` environment variables (for every package of the suite).

- ``XVAL_BACKEND``: comma list of engines (default ``manual,torch,jax``): built-in or registered names, module
  names or ``.py`` paths (``xval.engines`` resolves them).
- ``XVAL_DEVICE``: ``cpu``, ``cuda`` or ``auto`` (default; the GPU when torch/jax see one).
- ``XVAL_DTYPE``: ``float64`` (default) or ``float32``.
- ``XVAL_MAX_BYTES``: optional cap, in bytes, on any dense Hessian or block.
- ``XVAL_ARBITER_DIGITS``: the high-precision arbiter's working precision in decimal digits (default 40, at least
  20: float64 holds 16, and the arbiter checks itself at twice this precision).

Each function takes an optional mapping instead of ``os.environ``, so that callers and tests can pass
their own settings.
"""
import os

from .errors import ConfigError

ENGINE_NAMES = ("manual", "torch", "jax")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float64", "float32")
ARBITER_DIGITS = (20, 1000)  # the valid range of XVAL_ARBITER_DIGITS


def _read(env, name, default):
    env = os.environ if env is None else env
    value = env.get(name, "").strip()
    return value if value else default


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


def dtype(env=None):
    """``float64`` or ``float32`` from ``XVAL_DTYPE``."""
    value = _read(env, "XVAL_DTYPE", "float64").lower()
    if value not in DTYPES:
        raise ConfigError(f"XVAL_DTYPE={value!r} is not valid; use one of: {', '.join(DTYPES)}")
    return value


def max_bytes(env=None):
    """The ``XVAL_MAX_BYTES`` cap as an int, or ``None`` when unset."""
    raw = _read(env, "XVAL_MAX_BYTES", None)
    if raw is None:
        return None
    try:
        value = int(float(raw))
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigError(f"XVAL_MAX_BYTES={raw!r} is not valid; give a positive number of bytes, e.g. XVAL_MAX_BYTES=2e9")
    return value


def arbiter_digits(env=None):
    """The arbiter's precision in decimal digits from ``XVAL_ARBITER_DIGITS`` (default 40), a whole number in 20..1000."""
    raw = _read(env, "XVAL_ARBITER_DIGITS", "40")
    low, high = ARBITER_DIGITS
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(
            f"XVAL_ARBITER_DIGITS={raw!r} is not valid; give a whole number of decimal digits from {low} to {high} "
            "(float64 holds about 16; the default 40 leaves 24 for cancellation), e.g. XVAL_ARBITER_DIGITS=60"
        )
    return value
