"""Validation of a batch ``X`` ``(N, n_0)`` and targets ``Y`` ``(N, n_L)`` against a network."""
import numpy as np

from .errors import ShapeError
from .losses import get_loss
from .network import check_finite


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
    loss = get_loss(net.loss)
    if loss.check_targets is not None:
        loss.check_targets(Y)
    return X, Y
