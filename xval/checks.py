"""Every input check of the suite, shared by all engines: dtypes, finiteness, a batch ``X`` ``(N, n_0)`` and
targets ``Y`` ``(N, n_L)`` against a network, a direction ``v``, layer indices, and the memory guard of a
reference's dense result. Each raises an error of ``xval.errors`` whose message says what was given and the fix.
"""
import operator

import numpy as np

from . import definitions, memory
from .errors import ArgumentError, LayerIndexError, NonFiniteError, ShapeError

DTYPES = ("float64", "float32")


def check_dtype(dtype):
    """``dtype`` as a numpy dtype, after checking that it is one of ``DTYPES``."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        given = repr(dtype) if name in (None, dtype) else f"{dtype!r} ({name})"
        raise ArgumentError(f"dtype {given} is not supported; use one of: {', '.join(DTYPES)} (e.g. dtype='float64')")
    return np.dtype(name)


def check_finite(name, array):
    """Raise ``NonFiniteError`` naming ``name`` and the first bad entry if ``array`` holds NaN or Inf."""
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise NonFiniteError(
            f"{name} holds {np.count_nonzero(~np.isfinite(array))} non-finite value(s), "
            f"the first at index {index}: {float(array[index])!r}; replace NaN/Inf before passing it in"
        )


def check_inputs(net, X):
    """``X`` as an array of ``net.dtype``, after checking its shape and values."""
    X = np.asarray(X)
    n_in = net.sizes[0]
    if X.ndim != 2 or X.shape[1] != n_in or X.shape[0] == 0:
        if X.shape == (n_in,):
            hint = f"; for one sample use X.reshape(1, {n_in})"
        elif X.ndim == 2 and X.shape[1] == n_in:
            hint = "; X holds no samples, pass at least one row"
        else:
            hint = ""
        raise ShapeError(f"X has shape {X.shape}, expected (N, {n_in}) with N >= 1 for input width n_0 = {n_in}{hint}")
    check_finite("X", X)
    return X.astype(net.dtype, copy=False)


def check_data(net, X, Y):
    """``(X, Y)`` as arrays of ``net.dtype`` after checking shapes, values and (for the loss) targets."""
    X = check_inputs(net, X)
    Y = np.asarray(Y)
    n_out = net.sizes[-1]
    if Y.ndim != 2 or Y.shape[1] != n_out:
        raise ShapeError(f"Y has shape {Y.shape}, expected (N, {n_out}) for output width n_L = {n_out}")
    if Y.shape[0] != X.shape[0]:
        raise ShapeError(f"X has {X.shape[0]} samples (shape {X.shape}) but Y has {Y.shape[0]} (shape {Y.shape}); pass one target row per sample")
    check_finite("Y", Y)
    Y = Y.astype(net.dtype, copy=False)
    check_targets = definitions.loss(net.loss).check_targets
    if check_targets is not None:
        check_targets(Y)
    return X, Y


def check_direction(net, v):
    """``v`` as a ``(P,)`` array of ``net.dtype`` after checking its shape and that it holds finite real numbers."""
    v = np.asarray(v)
    if v.shape != (net.n_params,):
        raise ShapeError(
            f"v has shape {v.shape}, but this network has P = {net.n_params} parameters, so v must have shape "
            f"({net.n_params},), laid out like net.to_vector()"
        )
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
        hint = " (v.real, if its imaginary part is zero)" if np.issubdtype(v.dtype, np.complexfloating) else ""
        raise ArgumentError(
            f"v has dtype {v.dtype}, but it must hold real numbers (float or int); pass a real vector of shape "
            f"({net.n_params},){hint}"
        )
    check_finite("v", v)
    return v.astype(net.dtype, copy=False)


def check_layer(net, index, name):
    """``index`` as an int after checking that it numbers a layer of ``net``."""
    last = net.n_layers - 1
    try:
        if isinstance(index, bool):
            raise TypeError
        value = operator.index(index)
    except TypeError:
        raise LayerIndexError(f"{name} = {index!r} is not a layer index; pass an integer in 0..{last} (layers are numbered from 0)") from None
    if not 0 <= value <= last:
        raise LayerIndexError(f"{name} = {value} is out of range: this network has {net.n_layers} layers, valid {name} are 0..{last}")
    return value


def check_reference_block(net, l, m, engine):
    """``(l, m)`` checked as layer indices, after the memory guard has passed the ``(P_l, P_m)`` result that the
    reference ``engine`` (``"torch_ref"``, ``"jax_ref"``) would allocate: the references call it before any work."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    rows, cols = net.layer_param_counts[l], net.layer_param_counts[m]
    memory.check(memory.result_bytes(rows * cols, net.dtype), f"{engine}.hessian_block(l={l}, m={m}) (a {rows} x {cols} array)")
    return l, m
