"""One sample through a network's layers on a fresh tape (``Pass``): every layer kind of ``xval.layers`` written out
over object arrays of the sample's entries (``Var`` where an entry depends on the parameters, plain numbers where it
does not), with torch's semantics as ``xval.layers`` states them. Slow (a Python loop per product) but exact.

The parameters are the tape's leaves, one per entry of ``net.to_vector()``; a parameter used by several layers is the
same leaves in each (tied weights: the backward pass sums over the uses), a frozen tensor is constants.
"""

import itertools

import mpmath
import numpy as np

from .. import layers as kinds
from ..layers import describe
from . import formulas, numbers
from .tape import KinkError, Tape, Var, linear, value_of


class Pass:
    """The tape of sample ``n``: ``theta`` (numbers in the contract's order) as leaves; ``make`` makes constants
    (``constant(array)``: a frozen array's numbers, an object array; ``number(x, roundings)``). ``order``: the
    derivatives the caller takes (0 values, 1 first, 2 second), which decides where a kink is an error. ``keep``:
    layer positions whose input and output are kept in ``kept`` (``{position: (input, output)}``)."""

    def __init__(self, net, theta, make, n, order, keep=()):
        self.net, self.n, self.order, self.keep = net, n, order, set(keep)
        self.constant, self.number = make.constant, make.number
        self.tape = Tape()
        self.leaves = np.empty(len(theta), dtype=object)
        self.leaves[:] = [self.tape.leaf(t) for t in theta]
        self.tensors, start = [], 0
        for p in net.parameters:
            self.tensors.append(self.leaves[start : start + p.size].reshape(p.shape))
            start += p.size
        self.kept = {}

    def tensor(self, field):
        """A layer's tensor field: the parameter's leaves, a frozen array's numbers, or ``None``."""
        if field is None:
            return None
        if isinstance(field, int) and not isinstance(field, bool):
            return self.tensors[field]
        return self.constant(field)

    def outputs(self, x):
        """The network's output for the sample ``x`` (object array of the input shape), an object array."""
        for position, layer in enumerate(self.net.layers):
            kind = LAYERS.get(type(layer))
            y = kind(self, position, layer, x)
            if position in self.keep:
                self.kept[position] = (x, y)
            x = y
        return x

    def kink(self, position, layer, unit, why):
        unit = unit[0] if len(unit) == 1 else unit
        return KinkError(
            f"{describe(layer, self.net)} at layer {position}, sample {self.n}, unit {unit}: {why}; engines return a "
            "convention there, so derivatives cannot be compared: move the input, weights or bias off the kink "
            "(values, such as forward and loss, are defined there)"
        )


def _sizes(shape):
    return [range(s) for s in shape]


def _dense(run, position, layer, x):
    """``y = x W^T + b`` on the last axis; leading axes share ``W``."""
    W, b = run.tensor(layer.weight), run.tensor(layer.bias)
    n_out = W.shape[0]
    y = np.empty(x.shape[:-1] + (n_out,), dtype=object)
    for lead in np.ndindex(x.shape[:-1]):
        row = x[lead]
        for o in range(n_out):
            y[lead + (o,)] = linear(zip(W[o], row), None if b is None else b[o])
    return y


def _conv(run, position, layer, x):
    """torch's ConvNd: ``y[o, q] = b[o] + sum_{c in o's group, k} W[o, c, k] x[c, q s - p + k d]`` (zero padding);
    ConvTransposeNd scatters instead: ``x[c, p]`` adds ``W[c, o, k] x[c, p]`` to ``y[o, p s - p_pad + k d]``."""
    W, b = run.tensor(layer.weight), run.tensor(layer.bias)
    out_shape = run.net.shapes[position + 1]
    offsets = list(np.ndindex(W.shape[2:]))
    geometry = list(zip(layer.stride, layer.padding, layer.dilation))
    terms = {index: [] for index in np.ndindex(out_shape)}
    if not layer.transposed:
        c_out, per_group_in = W.shape[:2]
        per_group_out = c_out // layer.groups
        for o in range(c_out):
            first = (o // per_group_out) * per_group_in
            for q in np.ndindex(out_shape[1:]):
                items = terms[(o,) + q]
                for k in offsets:
                    p = tuple(qi * s - pad + ki * d for qi, ki, (s, pad, d) in zip(q, k, geometry))
                    if all(0 <= pi < ni for pi, ni in zip(p, x.shape[1:])):
                        items.extend((W[(o, ci) + k], x[(first + ci,) + p]) for ci in range(per_group_in))
    else:
        c_in, per_group_out = W.shape[:2]
        per_group_in = c_in // layer.groups
        for c in range(c_in):
            first = (c // per_group_in) * per_group_out
            for p in np.ndindex(x.shape[1:]):
                for k in offsets:
                    q = tuple(pi * s - pad + ki * d for pi, ki, (s, pad, d) in zip(p, k, geometry))
                    if all(0 <= qi < ni for qi, ni in zip(q, out_shape[1:])):
                        for oi in range(per_group_out):
                            terms[(first + oi,) + q].append((W[(c, oi) + k], x[(c,) + p]))
    y = np.empty(out_shape, dtype=object)
    for index, items in terms.items():
        y[index] = linear(items, None if b is None else b[index[0]])
    return y


def _activation(run, position, layer, x):
    function, options = formulas.ACTIVATIONS[layer.name], dict(layer.options)
    y = np.empty(x.shape, dtype=object)
    for index in np.ndindex(x.shape):
        try:
            y[index] = function(x[index], run.order, **options)
        except formulas.AtKink as kink:
            what = "no derivative" if kink.smoothness == 0 else "no second derivative"
            raise run.kink(
                position,
                layer,
                index,
                f"its input is exactly {kink.name}'s kink (beta x = threshold)"
                if layer.name == "softplus"
                else f"its input is exactly {kink.point}, where {kink.name} has {what}",
            ) from None
    return y


def _log_softmax(run, position, layer, x):
    y = np.empty(x.shape, dtype=object)
    for lead in np.ndindex(x.shape[:-1]):
        for k, value in enumerate(formulas.log_softmax(list(x[lead]))):
            y[lead + (k,)] = value
    return y


def _flatten(run, position, layer, x):
    return x.reshape(run.net.shapes[position + 1])


def _windows(layer, x, q):
    """The input positions of pooling window ``q`` (inside the input) and, for average pooling, torch's divisor."""
    dims = layer.dims
    dilation = layer.dilation or (1,) * dims
    ranges, padded, clipped = [], 1, 1
    for qi, n, k, s, p, d in zip(q, x.shape[1:], layer.kernel, layer.stride, layer.padding, dilation):
        start = qi * s - p
        if layer.mode == "avg":  # torch: the window may reach into the padding but not beyond it
            end = min(start + k, n + p)
            padded *= end - start
            start, end = max(start, 0), min(end, n)
            clipped *= end - start
            ranges.append(range(start, end))
        else:
            ranges.append([i for i in range(start, start + d * (k - 1) + 1, d) if 0 <= i < n])
    divisor = layer.divisor_override or (padded if layer.count_include_pad else clipped)
    return list(itertools.product(*ranges)), divisor


def _pool(run, position, layer, x):
    """MaxPool: the largest entry of each window (where several tie, derivatives are a convention); AvgPool: the
    window's sum over torch's divisor (``divisor_override``, or the window's size with or without the padding)."""
    out_shape = run.net.shapes[position + 1]
    y = np.empty(out_shape, dtype=object)
    for q in np.ndindex(out_shape[1:]):
        positions, divisor = _windows(layer, x, q)
        for c in range(out_shape[0]):
            entries = [x[(c,) + p] for p in positions]
            if layer.mode == "avg":
                inverse = 1 / mpmath.mpf(divisor)
                y[(c,) + q] = linear([(entry, inverse) for entry in entries])
                continue
            values = [numbers.real(value_of(entry)) for entry in entries]
            largest = max(values)
            tied = [entry for entry, value in zip(entries, values) if value == largest]
            if run.order > 0 and len({id(entry) for entry in tied}) > 1 and any(isinstance(e, Var) for e in tied):
                raise run.kink(
                    position,
                    layer,
                    (c,) + q,
                    f"{len(tied)} entries of its window tie for the maximum "
                    f"({float(largest):.17g}), where max has no derivative (torch takes the first)",
                )
            y[(c,) + q] = tied[0]
    return y


def _adaptive_avg_pool(run, position, layer, x):
    """torch's AdaptiveAvgPoolNd: output ``i`` of ``o`` over an axis of ``n`` averages ``floor(i n / o)`` to
    ``ceil((i + 1) n / o)``."""
    out_shape = run.net.shapes[position + 1]
    y = np.empty(out_shape, dtype=object)
    for q in np.ndindex(out_shape[1:]):
        ranges = [range((i * n) // o, -((-(i + 1) * n) // o)) for i, n, o in zip(q, x.shape[1:], out_shape[1:])]
        positions = list(itertools.product(*ranges))
        inverse = 1 / mpmath.mpf(len(positions))
        for c in range(out_shape[0]):
            y[(c,) + q] = linear([(x[(c,) + p], inverse) for p in positions])
    return y


def _normalization(run, position, layer, x):
    """BatchNorm in eval mode: ``(x - mean) / sqrt(var + eps) * weight + bias`` per channel (axis 0)."""
    weight, bias = run.tensor(layer.weight), run.tensor(layer.bias)
    y = np.empty(x.shape, dtype=object)
    for c in range(x.shape[0]):
        mean = run.number(layer.mean[c])
        scale = run.number(1 / mpmath.sqrt(mpmath.mpf(float(layer.var[c])) + mpmath.mpf(layer.eps)), roundings=3)
        for index in np.ndindex(x.shape[1:]):
            centred = (x[(c,) + index] - mean) * scale
            y[(c,) + index] = linear([(centred, 1 if weight is None else weight[c])], None if bias is None else bias[c])
    return y


def _pad(run, position, layer, x):
    """Constant padding, torch's F.pad order (last axis first); negative amounts crop."""
    y = np.empty(run.net.shapes[position + 1], dtype=object)
    y.fill(run.number(layer.value))
    source, target = [], []
    for axis, n in enumerate(x.shape):
        pair = x.ndim - 1 - axis
        left, right = layer.padding[2 * pair : 2 * pair + 2] if 2 * pair < len(layer.padding) else (0, 0)
        start, stop = max(0, -left), min(n, n + right)
        source.append(slice(start, stop))
        target.append(slice(start + left, stop + left))
    y[tuple(target)] = x[tuple(source)]
    return y


LAYERS = {
    kinds.Dense: _dense,
    kinds.Conv: _conv,
    kinds.Activation: _activation,
    kinds.LogSoftmax: _log_softmax,
    kinds.Flatten: _flatten,
    kinds.Pool: _pool,
    kinds.AdaptiveAvgPool: _adaptive_avg_pool,
    kinds.Normalization: _normalization,
    kinds.Pad: _pad,
}


def unsupported(net):
    """What in ``net`` the arbiter has no formula for (layer kinds, activations, pooling modes, the loss), as names."""
    missing = []
    for position, layer in enumerate(net.layers):
        if type(layer) not in LAYERS:
            missing.append(f"layer {position} ({type(layer).__name__})")
        elif isinstance(layer, kinds.Activation) and layer.name not in formulas.ACTIVATIONS:
            missing.append(f"activation {layer.name!r} (layer {position})")
        elif isinstance(layer, kinds.Pool) and layer.mode not in ("max", "avg"):
            missing.append(f"pooling mode {layer.mode!r} (layer {position})")
    if net.loss is not None and net.loss not in formulas.LOSSES:
        missing.append(f"loss {net.loss!r}")
    return missing
