"""Engines run where they cannot change or end what judges them.

- ``guarded_call``: an engine function gets read-only copies of ``X``, ``Y`` and ``v`` (memory that cannot even be
  re-flagged writeable), an engine that changed them anyway is reported (``EngineInputWriteError``), and its result
  is checked by ``checked_result`` (a real floating array of the contract's shape).
- ``IsolatedEngine``: an outside engine (a ``.py`` file, a module name, an entry point) imported and run in one child
  process, over a small pickle protocol on its standard input and output, each call with a time limit. ``sys.exit``,
  ``os._exit``, a crash, a hang or a ``KeyboardInterrupt`` inside the engine becomes that call's
  ``EngineProcessError``; the next call starts a fresh process.
- ``open_engine``: the built-in engines in this process, any other engine isolated.
"""

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from .importpath import stdlib_first
from .errors import (
    EngineInputWriteError,
    EngineProcessError,
    EngineResultError,
    EngineTimeoutError,
    EngineUnavailableError,
    UnknownNameError,
    XvalError,
    describe,
)

DEFAULT_TIMEOUT = 60.0  # seconds per call (and for the import); the case table's calls take milliseconds

_KINDS = {
    "c": "a complex",
    "i": "an integer",
    "u": "an unsigned integer",
    "b": "a boolean",
    "O": "a Python object",
    "U": "a text",
    "S": "a bytes",
    "M": "a datetime",
    "m": "a timedelta",
    "V": "a structured",
}


# ---- the result and the inputs of one call -------------------------------------------------------------------
def checked_result(label, value, shape=None):
    """``value`` as a new float64 numpy array, after checking that it is a real floating array (or a float) of
    ``shape`` (not checked when ``None``); otherwise ``EngineResultError`` naming ``label`` (``hvp``,
    ``hessian_block(0, 1)``). Complex results are refused even with a zero imaginary part, integers and booleans
    because a derivative of the contract is never exact in them, objects and text because they are not numbers."""
    if shape is not None and len(shape) and isinstance(shape[0], tuple):  # a pair of arrays (kfac_factors)
        if not isinstance(value, (tuple, list)) or len(value) != len(shape):
            raise EngineResultError(
                f"{label} returned {describe(value)}, but the contract returns {len(shape)} arrays "
                f"of shapes {', '.join(map(str, shape))}"
            )
        return tuple(
            checked_result(f"{label}[{i}]", part, part_shape) for i, (part, part_shape) in enumerate(zip(value, shape))
        )
    try:
        array = np.asarray(value)
    except Exception as exc:  # a tensor on a GPU, a tensor that requires grad, an object numpy cannot read
        raise EngineResultError(
            f"{label} returned {describe(value)}, which numpy cannot read as an array "
            f"({type(exc).__name__}: {exc}); return a numpy array of floats"
        ) from None
    if array.dtype.kind != "f":
        kind = _KINDS.get(array.dtype.kind, f"a {array.dtype}")
        raise EngineResultError(
            f"{label} returned {kind} array (dtype {array.dtype}), but the contract returns real "
            "floating values; return a float64 numpy array (for a complex result, the real "
            "function's derivative is its real part only if the imaginary part is truly zero)"
        )
    if shape is not None and array.shape != tuple(shape):
        raise EngineResultError(
            f"{label} returned an array of shape {array.shape}, but the contract's shape is {tuple(shape)}"
        )
    return array.astype(np.float64, copy=True)


def frozen_copy(value):
    """A copy of the numpy array ``value`` that nobody can write (its memory is an immutable ``bytes`` object, so even
    ``flags.writeable = True`` is refused); anything else is returned as it is (layer indices)."""
    if not isinstance(value, np.ndarray):
        return value
    return np.frombuffer(np.ascontiguousarray(value).tobytes(), dtype=value.dtype).reshape(value.shape)


def _changed(names, originals, copies):
    return [
        name
        for name, original, copy in zip(names, originals, copies)
        if isinstance(original, np.ndarray) and not np.array_equal(original, copy, equal_nan=True)
    ]


def guarded_call(function, label, net, arguments, shape=None, names=None):
    """``function(net, *copies)`` on read-only copies of ``arguments``; the result through ``checked_result``.

    ``names`` name the arguments in messages (``("X", "Y", "v")``). An engine that writes into an input (it cannot,
    short of changing memory behind numpy's back: then the copy differs afterwards) raises
    ``EngineInputWriteError``; the result is discarded, since it may have been computed from the changed data."""
    names = tuple(names or (f"argument {i + 1}" for i in range(len(arguments))))
    copies = tuple(frozen_copy(value) for value in arguments)
    try:
        value = function(net, *copies)
    except ValueError as exc:
        if "read-only" not in str(exc) and "WRITEABLE" not in str(exc):
            raise
        arrays = ", ".join(name for name, value in zip(names, arguments) if isinstance(value, np.ndarray))
        raise EngineInputWriteError(
            f"{label} tried to write into its inputs ({exc}); the inputs {arrays} are "
            "read-only: copy an array before changing it (X = X.copy())"
        ) from None
    changed = _changed(names, arguments, copies)
    if changed:
        raise EngineInputWriteError(
            f"{label} changed its input {', '.join(changed)}: an engine must leave its "
            "arguments as they were given (work on a copy)"
        )
    return checked_result(label, value, shape)


def _names(call):
    return (
        tuple(name for name in call.quantity.parameters)
        if len(call.quantity.parameters) == len(call.arguments)
        else None
    )


def evaluate(engine, call):
    """The result of ``call`` (a ``contract.Call``) on ``engine`` (a module or an ``IsolatedEngine``) as a float64
    array: read-only copies in, the result checked (``guarded_call``). ``AttributeError`` when not implemented."""
    if isinstance(engine, IsolatedEngine):
        return engine.evaluate(call)
    function = call.function(engine)
    if function is None:
        raise AttributeError(f"{getattr(engine, '__name__', engine)!r} does not implement {call.quantity.name}")
    return guarded_call(function, call.label, call.net, call.arguments, call.shape, _names(call))


def evaluate_function(engine, name, label, net, arguments, shape=None):
    """``engine.<name>(net, *arguments)`` for a function outside the contract (an estimator, a library's own layout),
    on read-only copies wherever the engine runs; the result checked to be a real floating array (of ``shape`` unless
    ``None``) as float64 numpy. ``AttributeError`` when the engine has no such function."""
    if isinstance(engine, IsolatedEngine):
        if name not in engine.functions and name not in engine.others:
            raise AttributeError(f"{engine.spec!r} has no function {name}")
        value = engine._request(("call", name, label, net, tuple(arguments), shape, None), label)
        return checked_result(label, value, shape)
    function = getattr(engine, name, None)
    if not callable(function):
        raise AttributeError(f"{getattr(engine, '__name__', engine)!r} has no function {name}")
    return guarded_call(function, label, net, tuple(arguments), shape)


def functions_of(engine):
    """The public functions of ``engine`` outside the contract (``own_functions``), wherever it runs."""
    if isinstance(engine, IsolatedEngine):
        return list(engine.others)
    from .engines import implemented

    return own_functions(engine, implemented(engine))


def conventions_of(engine):
    """The engine's ``CONVENTIONS`` (``declared_conventions``), wherever it runs."""
    if isinstance(engine, IsolatedEngine):
        return dict(engine.conventions)
    return declared_conventions(engine)


def failure_type(exc):
    """The name of the type of the exception an engine raised, wherever it ran (``MemoryGuardError``)."""
    return exc.type_name if isinstance(exc, RemoteError) else type(exc).__name__


def describe_failure(exc):
    """``ValueError: message`` for an exception raised by an engine, wherever it ran."""
    return str(exc) if isinstance(exc, RemoteError) else f"{type(exc).__name__}: {exc}"


# ---- an engine in a child process --------------------------------------------------------------------------------
class RemoteError(EngineProcessError):
    """An exception raised by an engine in its child process: its type's name and message (the object itself stays
    there: it may not be picklable, and its class may exist only in the engine)."""

    def __init__(self, type_name, message):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message = type_name, message


# Errors the child raises on purpose, raised again here as themselves.
_OWN_ERRORS = {
    cls.__name__: cls for cls in (EngineResultError, EngineInputWriteError, UnknownNameError, EngineUnavailableError)
}
_BOOT = "import sys; sys.path[:] = {path!r}; from xval.isolation import _serve; _serve()"


def _read_replies(stream, replies):
    """The reader thread: each pickled reply into ``replies``, then ``("ended",)`` when the child's output closes."""
    while True:
        try:
            replies.put(pickle.load(stream))
        except Exception:  # EOFError when the process ended; a torn reply when it died while writing one
            replies.put(("ended",))
            return


def _ended(process):
    """How the child ended, in words: its exit code, or the signal that killed it."""
    code = process.poll()
    if code is None:
        return "its process stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        crash = name in ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL")
        return f"its process was killed by {name}" + (" (a crash in native code)" if crash else "")
    return f"its process ended with exit code {code} (os._exit, or a crash)"


class IsolatedEngine:
    """The engine ``spec`` imported and called in a child process, one process for all its calls (a fresh one after
    a crash or a time-out). ``timeout``: seconds each call (and the import) may take.

    Its contract functions are attributes, so ``Quantity.implemented_by`` and ``Call.evaluate`` work on it; calls go
    through ``evaluate(call)``. Raises, on creation, what ``xval.engines.load`` raises for the spec, and
    ``EngineImportError`` for an import that ended or hung its process. ``close()`` ends the process."""

    def __init__(self, spec, timeout=DEFAULT_TIMEOUT):
        self.spec, self.timeout = spec, float(timeout)
        self._process = self._replies = None
        self.functions, self.__name__, self.file, self.others, self.conventions = self._start()
        for name in self.functions:
            setattr(self, name, self._remote(name))

    def __repr__(self):
        return f"<engine {self.spec!r} in process {self._process.pid if self._process else None}>"

    def _remote(self, name):
        def call(net, *arguments):
            return self._request(("call", name, name, net, arguments, None, None), name)

        call.__name__ = name
        return call

    def _start(self):
        from .engines import EngineImportError

        path = stdlib_first(sys.path)  # an engine file named like a standard-library module does not shadow it
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(path=path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._replies = queue.Queue()
        threading.Thread(target=_read_replies, args=(self._process.stdout, self._replies), daemon=True).start()
        try:
            reply = self._exchange(("load", self.spec))
        except KeyboardInterrupt:
            self.close(kill=True)
            raise
        except EngineTimeoutError:
            raise EngineImportError(
                f"engine {self.spec!r} did not finish being imported within {self.timeout:g} s (--timeout)"
            ) from None
        except EngineProcessError as exc:
            raise EngineImportError(f"engine {self.spec!r} could not be imported: {exc}") from None
        if reply[0] == "loaded":
            return reply[1:]
        self.close()
        _, type_name, message = reply
        if type_name in _OWN_ERRORS:
            raise _OWN_ERRORS[type_name](message)
        raise EngineImportError(message)

    def _exchange(self, message):
        """Send ``message``, return the reply; ``EngineTimeoutError`` or ``EngineProcessError`` when none comes."""
        try:
            pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process is gone: the reader thread says so
        try:
            reply = self._replies.get(timeout=self.timeout)
        except queue.Empty:
            self.close(kill=True)
            raise EngineTimeoutError(
                f"it did not finish within {self.timeout:g} s (--timeout); its process was stopped"
            ) from None
        if reply[0] == "ended":
            self._process.wait()
            how = _ended(self._process)
            self.close()
            raise EngineProcessError(how)
        return reply

    def _request(self, message, label):
        if self._process is None:  # the last call crashed or ran past its time: a fresh process
            from .engines import EngineImportError

            try:
                self._start()
            except EngineImportError as exc:
                raise EngineProcessError(f"{label}: the engine's process could not be started again: {exc}") from None
        try:
            reply = self._exchange(message)
        except EngineTimeoutError as exc:
            raise EngineTimeoutError(f"{label}: {exc}") from None
        except EngineProcessError as exc:
            raise EngineProcessError(f"{label}: {exc}") from None
        if reply[0] == "result":
            return reply[1]
        _, type_name, text = reply
        if type_name in _OWN_ERRORS:
            raise _OWN_ERRORS[type_name](text)
        raise RemoteError(type_name, text)

    def evaluate(self, call):
        """``call`` (a ``contract.Call``) run in the child on read-only copies, its result checked there."""
        if call.quantity.name not in self.functions:
            raise AttributeError(f"{self.spec!r} does not implement {call.quantity.name}")
        message = ("call", call.quantity.name, call.label, call.net, call.arguments, call.shape, _names(call))
        value = self._request(message, call.label)
        return checked_result(call.label, value, call.shape)  # again here: what came back is what is compared

    def close(self, kill=False):
        """End the child process: it exits on its own when its input closes, and is killed when it does not within
        2 s (at once with ``kill``: a process that ran past its time limit)."""
        process, self._process = self._process, None
        if process is None:
            return
        if not kill:
            try:
                process.stdin.close()
                process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_built_in(spec):
    """Whether ``spec`` names a built-in engine (``manual``, ``torch``, ``jax``, ``arbiter``): those run here."""
    from .engines import BUILT_IN

    return isinstance(spec, str) and spec.strip() in BUILT_IN


def open_engine(spec, timeout=DEFAULT_TIMEOUT):
    """The engine ``spec``: a built-in's module, loaded here, or an ``IsolatedEngine`` for any other."""
    from . import engines

    if is_built_in(spec):
        return engines.load(spec)
    return IsolatedEngine(spec, timeout)


def close(engine):
    """End ``engine``'s child process when it has one."""
    if isinstance(engine, IsolatedEngine):
        engine.close()


# ---- the child's side -------------------------------------------------------------------------------------------
def _raised(exc):
    """The reply for an exception of the engine (``SystemExit`` and ``KeyboardInterrupt`` included)."""
    if isinstance(exc, SystemExit):
        return ("raised", "SystemExit", f"the engine called sys.exit({exc.code!r})")
    return ("raised", type(exc).__name__, str(exc) or "(no message)")


def _load(spec):
    """``(reply, module)``: the engine ``spec`` imported here, or the reply saying why it could not be."""
    from . import engines

    try:
        module = engines.load(spec)
    except XvalError as exc:
        kind = type(exc).__name__ if type(exc).__name__ in _OWN_ERRORS else "EngineImportError"
        return ("raised", kind, str(exc)), None
    except BaseException as exc:  # SystemExit or KeyboardInterrupt at import too: the parent reports them
        _, kind, text = _raised(exc)
        return ("raised", "EngineImportError", f"engine {spec!r} raised while being imported: {kind}: {text}"), None
    functions = engines.implemented(module)
    return (
        "loaded",
        functions,
        getattr(module, "__name__", spec),
        getattr(module, "__file__", None),
        own_functions(module, functions),
        declared_conventions(module),
    ), module


def declared_conventions(module):
    """``CONVENTIONS``, when the engine declares it: ``{quantity: what differs}`` for contract quantities it computes
    in another form than the contract's (a library's own layout or scaling, kept out of the contract functions), as
    plain strings; ``{}`` otherwise."""
    declared = getattr(module, "CONVENTIONS", None)
    if not isinstance(declared, dict):
        return {}
    return {str(name): str(text) for name, text in declared.items()}


def own_functions(module, skip=()):
    """The public functions ``module`` defines itself, other than ``skip`` (an adapter's variants and estimators:
    ``mc_ggn``, ``kflr_factors``), sorted."""
    name = getattr(module, "__name__", None)
    return sorted(
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and attribute not in skip
        and callable(value)
        and getattr(value, "__module__", None) == name
        and not isinstance(value, type)
    )


def _call(module, name, label, net, arguments, shape, names):
    try:
        return ("result", guarded_call(getattr(module, name), label, net, arguments, shape, names))
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and the rest: the engine's failure, reported
        return _raised(exc)


def _watch_parent(parent):
    """End this process when its parent is gone (killed with SIGKILL, say) while the engine hangs."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _serve():
    """The child: answer ``("load", spec)`` and ``("call", ...)`` messages on the original standard input and output
    until the input closes. The engine's own prints go to standard error, its reads of standard input find nothing,
    and a Ctrl-C in the terminal is left to the parent (which then ends this process)."""
    incoming = os.fdopen(os.dup(0), "rb")
    outgoing = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    empty = os.open(os.devnull, os.O_RDONLY)
    os.dup2(empty, 0)
    os.close(empty)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    module = None
    while True:
        try:
            message = pickle.load(incoming)
        except EOFError:
            return
        if message[0] == "load":
            reply, module = _load(message[1])
        else:
            reply = _call(module, *message[1:])
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a result that does not pickle
            data = pickle.dumps(("raised", type(exc).__name__, f"the result could not be sent back: {exc}"))
        outgoing.write(data)
        outgoing.flush()
