"""Comparison of engine outputs: relative Frobenius error, tolerance tables keyed by dtype, and a failure report
that names the worst entries in the network's terms (``layer 0, W[1, 1]``, ``sample 3, output 2``).

Non-finite values never pass: a NaN anywhere, or an infinity where the other array holds something else, is an
infinite relative error (``relative_error``).
"""

import math

import numpy as np

# Relative Frobenius error allowed between two engines computing in the given dtype.
TOLERANCES = {"float64": 1e-10, "float32": 2e-4}
# Looser: central finite differences against an exact derivative (truncation + cancellation error).
FINITE_DIFFERENCE_TOLERANCES = {"float64": 1e-6, "float32": 5e-2}

_TINY = 1e-300


def flat_parts(value):
    """A result as one array: a pair of arrays (``kfac_factors``' ``(A, G)``) raveled end to end."""
    if isinstance(value, (tuple, list)) and value and all(np.ndim(part) >= 1 for part in value):
        return np.concatenate([np.asarray(part, dtype=np.float64).reshape(-1) for part in value])
    return value


def _as_float_arrays(actual, expected):
    actual, expected = flat_parts(actual), flat_parts(expected)
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {actual.shape} != {expected.shape}")
    return actual, expected


def relative_error(actual, expected):
    """``||actual - expected|| / max(||actual||, ||expected||)`` (0 when both are zero).

    ``inf`` when either holds a NaN, or when an infinity of one is not the same infinity in the other: a value that
    is not a number is never within a tolerance. Equal infinities at the same entries agree, and the finite rest is
    compared."""
    actual, expected = _as_float_arrays(actual, expected)
    finite = np.isfinite(actual)
    if not (finite.all() and np.isfinite(expected).all()):
        if np.isnan(actual).any() or np.isnan(expected).any() or not np.array_equal(finite, np.isfinite(expected)):
            return math.inf
        if not np.array_equal(actual[~finite], expected[~finite]):
            return math.inf
        actual, expected = actual[finite], expected[finite]
    largest = max(np.max(np.abs(actual), initial=0.0), np.max(np.abs(expected), initial=0.0))
    if largest < _TINY:
        return 0.0
    actual, expected = actual / largest, expected / largest  # the ratio is the same, and no norm overflows
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(actual), np.linalg.norm(expected)))


def differences(actual, expected):
    """``|actual - expected|`` entry by entry, ``inf`` where a NaN or an unmatched infinity makes it undefined."""
    actual, expected = _as_float_arrays(actual, expected)
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(actual - expected)
    same = actual == expected  # equal infinities: no difference
    return np.where(same, 0.0, np.where(np.isnan(difference), np.inf, difference))


# ---- names of entries, in the network's terms ----------------------------------------------------------------
def parameter_tensors(net):
    """``[(layer, tensor name, shape)]`` of every parameter tensor, in the contract's order (per layer ``W_l``
    row-major, then ``b_l``). The one place that knows the layout: a network with more layer kinds extends this
    list, and every name below follows."""
    return [(layer, name, tuple(shape)) for layer, name, shape in net.parameter_names()]


def _layout(net):
    """``[(layer, name, shape, start)]``: each tensor with the offset of its first entry in the parameter vector."""
    start, layout = 0, []
    for layer, name, shape in parameter_tensors(net):
        layout.append((layer, name, shape, start))
        start += math.prod(shape)
    return layout


def _offset(net, layer):
    """Where layer ``layer``'s parameters start in the parameter vector (``None``: the whole vector)."""
    return 0 if layer is None else net.param_slices[layer].start


def parameter_name(net, index, layer=None):
    """``layer 0, W[1, 1]``: the parameter at ``index`` of the parameter vector, or of layer ``layer``'s parameters."""
    flat = _offset(net, layer) + int(index)
    for tensor_layer, name, shape, start in _layout(net):
        if start <= flat < start + math.prod(shape):
            position = ", ".join(str(int(i)) for i in np.unravel_index(flat - start, shape))
            return f"layer {tensor_layer}, {name}[{position}]"
    raise IndexError(f"parameter index {flat} is beyond the network's {net.n_params} parameters")


def tensor_of(net, index, layer=None):
    """``layer 0 W``: the parameter tensor holding ``index`` (as in ``parameter_name``)."""
    flat = _offset(net, layer) + int(index)
    for tensor_layer, name, shape, start in _layout(net):
        if start <= flat < start + math.prod(shape):
            return f"layer {tensor_layer} {name}"
    raise IndexError(f"parameter index {flat} is beyond the network's {net.n_params} parameters")


def axes(call):
    """Per axis of ``call``'s result: ``("sample", None)``, ``("output", None)``, ``("eigenvalue", None)`` or
    ``("parameter", layer)`` (``layer`` ``None`` for the whole parameter vector), from the quantity's ``axes`` in the
    contract; ``None`` where the result is not one array of that many axes."""
    kinds = call.quantity.axes
    if kinds is None or len(kinds) != len(call.shape):
        return None
    named = []
    for kind in kinds:
        if kind.startswith("parameter of "):
            layers = dict(zip(("l", "m"), call.arguments[-2:]))
            named.append(("parameter", int(layers[kind[-1]])))
        else:
            named.append((kind, None))
    return named


def entry_name(call, index):
    """The entry ``index`` (a tuple) of ``call``'s result in the network's terms: ``sample 3, output 1``,
    ``sample 3, layer 0, W[1, 1]``; for a matrix of parameters ``row layer 0, W[1, 1], column layer 2, b[3]``."""
    index = tuple(int(i) for i in index)
    kinds = axes(call)
    if kinds is None:
        return f"index {index}"
    if not kinds:
        return "the value"
    matrix = sum(kind == "parameter" for kind, _ in kinds) == 2
    parts, roles = [], iter(("row ", "column ") if matrix else ("", ""))
    for (kind, layer), position in zip(kinds, index):
        if kind == "parameter":
            parts.append(next(roles) + parameter_name(call.net, position, layer))
        else:
            parts.append(f"{kind} {position}")
    return ", ".join(parts)


def worst(actual, expected, count=3):
    """The ``count`` entries with the largest absolute differences: ``[(index tuple, actual, expected, |diff|)]``."""
    actual, expected = _as_float_arrays(actual, expected)
    difference = differences(actual, expected)
    order = np.argsort(difference.reshape(-1), kind="stable")[::-1][:count]
    found = []
    for flat in order:
        index = tuple(int(i) for i in np.unravel_index(flat, actual.shape)) if actual.ndim else ()
        found.append((index, float(actual[index]), float(expected[index]), float(difference[index])))
    return found


def worst_entries(actual, expected, count=3, call=None, digits=17):
    """Lines ``at index (i, j): a != b`` for the ``count`` largest absolute differences; with ``call`` (the
    ``contract.Call`` that produced them) each entry is named in the network's terms, ``layer 0, W[1, 1]: a != b``."""
    lines = []
    for index, ours, theirs, difference in worst(actual, expected, count):
        where = f"at index {index}" if call is None else f"{entry_name(call, index)} (index {index})"
        lines.append(f"{where}: {ours:.{digits}g} != {theirs:.{digits}g} (|diff| {difference:.3g})")
    return lines


def assert_close(actual, expected, rtol, what=""):
    """Fail, naming the worst entries, unless ``relative_error(actual, expected) <= rtol``; return the error."""
    error = relative_error(actual, expected)
    if not error <= rtol:
        report = "\n  ".join(worst_entries(actual, expected))
        raise AssertionError(f"{what}: relative error {error:.3g} > tolerance {rtol:.1g}\n  {report}")
    return error
