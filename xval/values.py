"""Checks of plain values, shared by the network and every engine: dtypes, real arrays (no None, strings, ragged
lists, complex, booleans or objects; integers are exact values) and finiteness, before and after the cast to a
dtype. They know nothing of networks (``xval.checks`` holds the checks that do)."""

import numpy as np

from .errors import ArgumentError, NonFiniteError, ShapeError, describe

DTYPES = ("float64", "float32")


def check_dtype(dtype):
    """``dtype`` as a numpy dtype, after checking that it is one of ``DTYPES`` (``None`` is refused, not float64)."""
    try:
        name = None if dtype is None else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        given = repr(dtype) if name in (None, dtype) else f"{dtype!r} ({name})"
        raise ArgumentError(f"dtype {given} is not supported; use one of: {', '.join(DTYPES)} (e.g. dtype='float64')")
    return np.dtype(name)


def real_array(name, value, expected):
    """``value`` as a numpy array of real numbers (float or integer), without casting; ``expected`` describes it.

    Refused, each with its own message: ``None``, strings and bytes, ragged nested lists, complex arrays (even with
    every imaginary part zero: the suite differentiates real functions), booleans (``True`` is not a number here)
    and objects. Integer arrays are accepted as the exact values they hold.
    """
    if value is None or isinstance(value, (str, bytes)):
        raise ArgumentError(f"{name} is {describe(value)}, but it must be {expected}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ShapeError(
            f"{name} is a ragged nested sequence (rows of different lengths); it must be {expected}"
        ) from None
    kind = array.dtype.kind
    if kind == "c":
        zero = " even though every imaginary part is zero" if not np.any(array.imag) else ""
        raise ArgumentError(
            f"{name} is complex ({array.dtype}){zero}; it must be {expected}: pass {name}.real if the "
            "imaginary part is meant to be zero"
        )
    if kind == "b":
        raise ArgumentError(
            f"{name} is a boolean array; it must be {expected}: pass {name}.astype(float) if 0/1 is meant"
        )
    if kind not in "fiu":
        raise ArgumentError(f"{name} has dtype {array.dtype}, not a real number type; it must be {expected}")
    return array


def cast_finite(name, array, dtype):
    """``array`` cast to ``dtype`` after checking that every entry is finite there (1e300 is Inf in float32)."""
    check_finite(name, array)
    if array.dtype == dtype:
        return array
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(dtype)
    if not all_finite(cast):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(cast))[0])
        raise NonFiniteError(
            f"{name}{list(index)} = {float(array[index])!r} is finite but overflows {np.dtype(dtype).name} (largest "
            f"{np.finfo(dtype).max:.4g}); scale {name} down or use a float64 network (net.astype('float64'))"
        )
    return cast


def check_finite(name, array):
    """Raise ``NonFiniteError`` naming ``name`` and the first bad entry if ``array`` holds NaN or Inf."""
    if array.dtype.kind in "iu" or all_finite(array):
        return
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise NonFiniteError(
            f"{name} holds {np.count_nonzero(~np.isfinite(array))} non-finite value(s), "
            f"the first at index {index}: {float(array[index])!r}; replace NaN/Inf before passing it in"
        )


def all_finite(value):
    """Whether a float or array holds no NaN/Inf, without a full boolean temporary when the sum is finite."""
    array = np.asarray(value)
    if array.dtype.kind not in "fc":
        return True
    if array.size <= 1 << 16:  # small: the boolean temporary is cheaper than entering errstate
        return bool(np.isfinite(array).all())
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(array)):
            return True
    # The sum also overflows for large finite entries: check exactly, a few rows at a time (2-D views, even
    # transposed ones, reshape without a copy).
    rows = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(1, -1)
    step = max(1, (1 << 20) // rows.shape[1])
    return all(np.all(np.isfinite(rows[start : start + step])) for start in range(0, len(rows), step))
