"""manual's layer kinds: one module per kind, each a ``Step`` class with the forward pass, the transposed-Jacobian
product (backprop), the Jacobian product (forward mode, R-operator) and the second-order terms of that kind.

The quantities (``manual._sequence`` and the modules that use it) are written once over a list of steps; a new layer
kind is one module here plus its entry in ``KINDS`` (and its record in ``xval.layers``).

Shapes: a batch is ``(N, *shape)``; a set of vectors per sample (Jacobian rows, the columns of a Hessian block) is
``(N, *lead, *shape)`` with any number of ``lead`` axes, which every step carries through.
"""

from xval import layers as records

from .base import ParameterStep, Step
from .conv import Conv
from .dense import Dense
from .elementwise import Elementwise
from .log_softmax import LogSoftmax
from .normalization import Normalization
from .pool import AdaptivePool, Pool
from .reshape import Flatten, Pad

KINDS = {
    records.Dense: Dense,
    records.Activation: Elementwise,
    records.LogSoftmax: LogSoftmax,
    records.Flatten: Flatten,
    records.Pad: Pad,
    records.Normalization: Normalization,
    records.Conv: Conv,
    records.Pool: Pool,
    records.AdaptiveAvgPool: AdaptivePool,
}


def build(record, net, lib, in_shape, out_shape):
    """The ``Step`` of ``record`` (a layer of ``net``) with its arrays in ``lib``."""
    return KINDS[type(record)](record, net, lib, tuple(in_shape), tuple(out_shape))


__all__ = ["KINDS", "Step", "ParameterStep", "build"]
