"""Exceptions raised for bad input. Each message says what was given, what was expected, and how to fix it."""

import math
import numbers

import numpy as np


class XvalError(Exception):
    """Base class of every error the suite raises on purpose."""


class ShapeError(XvalError, ValueError):
    """An array has the wrong shape (weights that do not chain, data of the wrong width or batch)."""


class NonFiniteError(XvalError, ValueError):
    """An array holds NaN or Inf."""


class UnknownNameError(XvalError, ValueError):
    """An activation, loss, engine or setting name that is not registered."""


class TargetError(XvalError, ValueError):
    """Targets that the loss cannot take (cross-entropy targets that are not probability rows)."""


class ArgumentError(XvalError, ValueError):
    """An argument out of its valid range or of the wrong kind (a learning rate, step count, dtype, ``eps``)."""


class UnsupportedError(ArgumentError):
    """What an engine declares it cannot compute (a layer kind, a loss, a quantity for this network): the engine is
    not checked on that call, which is neither a failure nor a pass."""


class UnsupportedNetworkError(UnsupportedError):
    """A network that a view of it does not describe (``net.weights`` of a network that is not a plain MLP), or that an
    engine does not handle."""


class OverflowResultError(NonFiniteError, ArithmeticError):
    """A computation on finite inputs whose result overflowed the network's dtype; the message names the layer."""


class ConfigError(XvalError, ValueError):
    """A bad value in an ``XVAL_*`` environment variable."""


class EngineUnavailableError(XvalError, ImportError):
    """A registered engine whose package is not installed."""


class LayerIndexError(XvalError, IndexError):
    """A layer index ``l`` or ``m`` that is not an integer in ``0 .. L-1``."""


class MemoryGuardError(XvalError, MemoryError):
    """A dense array that would not fit in the memory available (refused before allocation)."""


class EngineResultError(XvalError, TypeError):
    """An engine's result that is not what the contract returns: not a real floating array (complex, integer, bool,
    object, text), or not of the contract's shape."""


class EngineInputWriteError(XvalError, RuntimeError):
    """An engine that wrote into the arrays it was given (``X``, ``Y``, ``v``): it could change what it is judged by."""


class EngineProcessError(XvalError, RuntimeError):
    """An engine run in its own process (``xval.isolation``) that raised, ended its process (``sys.exit``,
    ``os._exit``, a crash) or ran past its time limit; the message says which, and where."""


class EngineTimeoutError(EngineProcessError):
    """An isolated engine's call that did not finish within its time limit (``--timeout``)."""


def unknown_name(kind, name, valid, plural=None):
    """The error for a name that is not one of ``valid``."""
    listed = ", ".join(sorted(valid))
    return UnknownNameError(f"unknown {kind} {name!r}; valid {plural or kind + 's'} are: {listed}")


def is_real_number(value):
    """Whether ``value`` is a real scalar (Python or numpy int/float; ``bool`` is not a number here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value):
    """``math.isfinite`` that calls an int too large for a float (``2**1100``) not finite instead of raising."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_positive(name, value, fix):
    """Raise ``ArgumentError`` unless ``value`` is a finite real number ``> 0``; ``fix`` says what to pass."""
    if not (is_real_number(value) and _finite(value) and value > 0):
        raise ArgumentError(f"{name} is {value!r}, but it must be a finite number > 0; {fix}")


def check_non_negative(name, value, fix):
    """Raise ``ArgumentError`` unless ``value`` is a finite real number ``>= 0``; ``fix`` says what to pass."""
    if not (is_real_number(value) and _finite(value) and value >= 0):
        raise ArgumentError(f"{name} is {value!r}, but it must be a finite number >= 0; {fix}")


def check_whole(name, value, minimum, fix):
    """Raise ``ArgumentError`` unless ``value`` is a whole number ``>= minimum`` (``5`` or ``5.0``); ``fix`` says
    what to pass."""
    if not (is_real_number(value) and _finite(value) and float(value).is_integer() and value >= minimum):
        raise ArgumentError(f"{name} is {value!r}, but it must be a whole number >= {minimum}; {fix}")


def describe(value):
    """A short description of ``value`` for a message: its type and, when short, its repr."""
    text = repr(value)
    kind = type(value).__name__
    return f"{text} ({kind})" if len(text) <= 40 else f"a {kind}"


def check_seed(name, value):
    """``value`` as an int after checking that it is a whole number ``>= 0`` (``numpy.random.default_rng`` seeds).

    ``None`` is refused: the suite is reproducible by design, so every random draw takes an explicit seed.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ArgumentError(
            f"{name} is {describe(value)}, but it must be an integer >= 0 (results are reproducible, so "
            f"None is not accepted); pass e.g. {name}=0"
        )
    return int(value)


def check_flag(name, value):
    """``value`` after checking that it is ``True`` or ``False`` (numpy booleans too), not any truthy object."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} is {describe(value)}, but it must be True or False")
    return bool(value)
