"""Index tables for sliding windows (convolution and pooling), built once per layer in numpy and used through
``take`` on any array library (the array-API standard has gathers but no scatter-add).

A window map sends output position ``o`` (flat over the output's spatial axes) and kernel offset ``k`` (flat over the
kernel's axes) to the input position ``o * stride - padding + k * dilation`` (flat over the input's spatial axes),
or to ``sentinel`` = the input's size when that falls in the padding. Gathering from the input with one slot appended
(zero, or -inf for max pooling) gives every window at once; the transpose (adding each window's entries back onto the
input) is a gather too, over the ``reverse`` table: for each input position, the flat ``(k, o)`` entries that read it,
padded with a pointer to an appended zero.
"""

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    """``index`` ``(K, O)``: the input position of kernel offset ``k`` in window ``o`` (``sentinel`` in the
    padding); ``reverse`` ``(I, R)``: per input position the flat ``k * O + o`` reading it (``K * O`` pads);
    ``valid`` ``(K, O)``: which entries are inside the input."""

    index: np.ndarray
    reverse: np.ndarray
    valid: np.ndarray
    in_size: int
    out_size: int
    kernel_size: int

    @property
    def sentinel(self):
        return self.in_size


def sliding(in_spatial, out_spatial, kernel, stride, padding, dilation):
    """The ``Windows`` of a convolution or pooling over spatial axes ``in_spatial`` -> ``out_spatial``."""
    axes = []
    for _n, o, k, s, p, d in zip(in_spatial, out_spatial, kernel, stride, padding, dilation):
        positions = np.arange(o)[None, :] * s - p + np.arange(k)[:, None] * d  # (k, o)
        axes.append(positions)
    return _tables(in_spatial, out_spatial, kernel, axes)


def ranges(in_spatial, out_spatial, starts, ends):
    """The ``Windows`` of windows ``[starts[a][o], ends[a][o])`` per axis ``a`` (adaptive pooling); windows shorter
    than the longest read the sentinel in their extra offsets."""
    kernel, axes = [], []
    for _n, _o, start, end in zip(in_spatial, out_spatial, starts, ends):
        length = int(np.max(end - start))
        offsets = np.arange(length)[:, None]
        positions = start[None, :] + offsets
        positions = np.where(offsets < (end - start)[None, :], positions, -1)  # beyond the window: outside
        kernel.append(length)
        axes.append(positions)
    return _tables(in_spatial, out_spatial, kernel, axes)


def _tables(in_spatial, out_spatial, kernel, axes):
    in_size, out_size, kernel_size = math.prod(in_spatial), math.prod(out_spatial), math.prod(kernel)
    index = np.zeros((kernel_size, out_size), dtype=np.int64)
    valid = np.ones((kernel_size, out_size), dtype=bool)
    strides = [math.prod(in_spatial[a + 1 :]) for a in range(len(in_spatial))]
    for flat_k, ks in enumerate(itertools.product(*[range(k) for k in kernel])):
        flat = np.zeros(out_spatial, dtype=np.int64)
        ok = np.ones(out_spatial, dtype=bool)
        for a, (k, positions) in enumerate(zip(ks, axes)):
            along = positions[k]  # (o_a,)
            shape = [1] * len(out_spatial)
            shape[a] = out_spatial[a]
            along = along.reshape(shape)
            ok = ok & (along >= 0) & (along < in_spatial[a])
            flat = flat + along * strides[a]
        index[flat_k] = np.where(ok, flat, in_size).reshape(-1)
        valid[flat_k] = ok.reshape(-1)
    counts = np.bincount(index[valid], minlength=in_size)
    width = max(int(counts.max(initial=0)), 1)
    reverse = np.full((in_size, width), kernel_size * out_size, dtype=np.int64)
    fill = np.zeros(in_size, dtype=np.int64)
    flat_entries = np.flatnonzero(valid.reshape(-1))
    for entry in flat_entries:
        position = index.reshape(-1)[entry]
        reverse[position, fill[position]] = entry
        fill[position] += 1
    return Windows(index, reverse, valid, in_size, out_size, kernel_size)


@dataclass(frozen=True)
class Tables:
    """A ``Windows``' two tables as flat integer arrays of one array library, with their shapes."""

    index: object
    index_shape: tuple
    reverse: object
    reverse_shape: tuple


def device_tables(lib, windows):
    """The index tables as arrays of ``lib`` (``take`` wants the library's own integer arrays)."""
    xp = lib.xp
    return Tables(
        xp.asarray(windows.index.reshape(-1), device=lib.device),
        windows.index.shape,
        xp.asarray(windows.reverse.reshape(-1), device=lib.device),
        windows.reverse.shape,
    )


def _gather(xp, x, flat_table, shape, fill):
    """``x`` ``(..., size)`` with one ``fill`` slot appended, gathered along its last axis at the flat indices
    ``flat_table``, shaped ``(..., *shape)``."""
    lead = tuple(x.shape[:-1])
    extra = xp.full(lead + (1,), fill, dtype=x.dtype, device=x.device)
    extended = xp.concat([x, extra], axis=-1)
    return xp.reshape(xp.take(extended, flat_table, axis=-1), lead + tuple(shape))


def unfold(xp, x, tables, fill=0.0):
    """Every window: ``x`` ``(..., I)`` -> ``(..., K, O)`` (``fill`` in the padding)."""
    return _gather(xp, x, tables.index, tables.index_shape, fill)


def fold(xp, columns, tables):
    """The transpose of ``unfold``: ``(..., K, O)`` -> ``(..., I)``, each input position the sum of the window
    entries that read it."""
    k, o = tables.index_shape
    lead = tuple(columns.shape[:-2])
    flat = xp.reshape(columns, lead + (k * o,))
    return xp.sum(_gather(xp, flat, tables.reverse, tables.reverse_shape, 0.0), axis=-1)
