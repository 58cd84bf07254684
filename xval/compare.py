"""Comparison of engine outputs: relative Frobenius error, tolerance tables keyed by dtype, and a
failure report that names the worst entries."""
import numpy as np

# Relative Frobenius error allowed between two engines computing in the given dtype.
TOLERANCES = {"float64": 1e-10, "float32": 2e-4}
# Looser: central finite differences against an exact derivative (truncation + cancellation error).
FINITE_DIFFERENCE_TOLERANCES = {"float64": 1e-6, "float32": 5e-2}

_TINY = 1e-300


def relative_error(actual, expected):
    """``||actual - expected|| / max(||actual||, ||expected||)`` (0 when both are zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {actual.shape} != {expected.shape}")
    scale = max(np.linalg.norm(actual), np.linalg.norm(expected))
    if scale < _TINY:
        return 0.0
    return float(np.linalg.norm(actual - expected) / scale)


def worst_entries(actual, expected, count=3):
    """Lines ``at index (i, j): a != b`` for the ``count`` largest absolute differences."""
    actual = np.atleast_1d(np.asarray(actual, dtype=np.float64))
    expected = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    diff = np.abs(actual - expected).reshape(-1)
    order = np.argsort(diff)[::-1][:count]
    lines = []
    for flat in order:
        index = np.unravel_index(flat, actual.shape)
        index = tuple(int(i) for i in index)
        lines.append(f"at index {index}: {actual[index]:.17g} != {expected[index]:.17g} (|diff| {diff[flat]:.3g})")
    return lines


def assert_close(actual, expected, rtol, what=""):
    """Fail, naming the worst entries, unless ``relative_error(actual, expected) <= rtol``; return the error."""
    error = relative_error(actual, expected)
    if not error <= rtol:
        report = "\n  ".join(worst_entries(actual, expected))
        raise AssertionError(f"{what}: relative error {error:.3g} > tolerance {rtol:.1g}\n  {report}")
    return error
