"""Exceptions raised for bad input. Each message says what was given, what was expected, and how to fix it."""


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


class ConfigError(XvalError, ValueError):
    """A bad value in an ``XVAL_*`` environment variable."""


class EngineUnavailableError(XvalError, ImportError):
    """A registered engine whose package is not installed."""


class LayerIndexError(XvalError, IndexError):
    """A layer index ``l`` or ``m`` that is not an integer in ``0 .. L-1``."""


class MemoryGuardError(XvalError, MemoryError):
    """A dense array that would not fit in the memory available (refused before allocation)."""


def unknown_name(kind, name, valid, plural=None):
    """The error for a name that is not one of ``valid``."""
    listed = ", ".join(sorted(valid))
    return UnknownNameError(f"unknown {kind} {name!r}; valid {plural or kind + 's'} are: {listed}")
