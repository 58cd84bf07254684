"""The engine registry: a name, a module or a ``.py`` file -> the engine module.

An engine is any module exposing any subset of the contract functions (``xval.contract``). Wherever an engine is
named (``XVAL_BACKEND``, ``--backend``, ``python -m xval check``) these forms work, tried in this order:

- a built-in name: ``manual``, ``torch``, ``jax`` (and ``arbiter`` when the arbiter is present);
- the short name of one of the field's libraries, whose adapter ships with the suite in ``peers/`` (``PEERS``:
  ``backpack``, ``curvlinops``, ``nngeometry``, ``laplace``, ``eigenthings``, ``opacus``, ``pyhessian``); a library
  that is not installed is an ``EngineUnavailableError`` with the install line that keeps the pinned torch;
- a short name that an installed package registers in the entry-point group ``xval.engines``
  (``[project.entry-points."xval.engines"] myengine = "mypkg.engine"``);
- a path to a ``.py`` file (``path/to/engine.py``), imported under a private module name;
- an importable module name (``mypkg.engine``).
"""

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from dataclasses import dataclass

from .errors import EngineUnavailableError, UnknownNameError, XvalError

ENTRY_POINT_GROUP = "xval.engines"


class EngineImportError(XvalError, ImportError):
    """An engine module that was found but raised while being imported, or that exposes no contract function."""


@dataclass(frozen=True)
class BuiltIn:
    """A built-in engine: its module, the package it needs, and how to install that package."""

    module: str
    package: str
    install: str


BUILT_IN = {
    "manual": BuiltIn("manual", "numpy", "pip install numpy"),
    "torch": BuiltIn("torch_ref", "torch", "pip install torch  (or: pip install -e '.[torch]')"),
    "jax": BuiltIn("jax_ref", "jax", "pip install jax  (or: pip install -e '.[jax]')"),
    "arbiter": BuiltIn("xval.arbiter", "mpmath", "pip install mpmath"),
}


@dataclass(frozen=True)
class Peer:
    """One of the field's libraries: its adapter module (in ``peers/``, shipped with the suite) and the import name of
    the library itself (whether it is installed decides whether the name is available)."""

    module: str
    library: str
    distribution: str  # the pip package, for its version


# The adapters are part of this project, like the built-in engines, so their names live here rather than in entry
# points: entry points are read from installed metadata, which a source checkout or a stale editable install lacks.
PEERS = {
    "backpack": Peer("peers.backpack", "backpack", "backpack-for-pytorch"),
    "curvlinops": Peer("peers.curvlinops", "curvlinops", "curvlinops-for-pytorch"),
    "nngeometry": Peer("peers.nngeometry", "nngeometry", "nngeometry"),
    "laplace": Peer("peers.laplace", "laplace", "laplace-torch"),
    "eigenthings": Peer("peers.eigenthings", "hessian_eigenthings", "hessian-eigenthings"),
    "opacus": Peer("peers.opacus", "opacus", "opacus"),
    "pyhessian": Peer("peers.pyhessian", "pyhessian", "pyhessian"),
}

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _forms_hint():
    names = ", ".join(sorted(available_names()))
    return (
        f"name an engine as a built-in or registered name ({names}), an importable module name (mypkg.engine) "
        "or a path to a .py file (path/to/engine.py)"
    )


def _present(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_names():
    """Built-in names whose module is present, the peers whose library is installed, and the names registered
    through the ``xval.engines`` entry points."""
    names = {name for name, entry in BUILT_IN.items() if _present(entry.module)}
    names |= {name for name, peer in PEERS.items() if _present(peer.module) and _present(peer.library)}
    return names | set(_entry_points())


def peer_names():
    """The short names of the field's libraries (``PEERS``), installed or not."""
    return list(PEERS)


def version(spec):
    """The installed version of the library behind a peer name (``backpack`` -> ``1.7.1``), else ``""``."""
    peer = PEERS.get(spec.strip()) if isinstance(spec, str) else None
    if peer is None:
        return ""
    try:
        return importlib.metadata.version(peer.distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _entry_points():
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _built_in(name):
    entry = BUILT_IN[name]
    try:
        importlib.import_module(entry.package)
    except ImportError as exc:
        raise EngineUnavailableError(
            f"engine {name!r} needs the package {entry.package!r}, which is not installed ({exc}); run: {entry.install}"
        ) from None
    return importlib.import_module(entry.module)


def _from_file(spec):
    path = os.path.abspath(os.path.expanduser(spec))
    if not os.path.isfile(path):
        raise UnknownNameError(f"engine file {spec!r} does not exist (looked for {path}); {_forms_hint()}")
    # One private module name per file, so that two files called engine.py do not replace each other.
    module_name = (
        f"xval_engine_{re.sub(r'[^0-9A-Za-z_]', '_', os.path.splitext(os.path.basename(path))[0])}_"
        f"{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    )
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise EngineImportError(
            f"engine file {spec!r} raised while being imported: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _from_module_name(spec):
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise UnknownNameError(
                f"unknown engine {spec!r}: it is not a built-in or registered name, and no module of "
                f"that name can be imported; {_forms_hint()}"
            ) from None
        raise EngineUnavailableError(
            f"engine module {spec!r} needs the package {exc.name!r}, which is not installed; "
            f"run: pip install {exc.name}"
        ) from None
    except EngineUnavailableError:  # the engine's own word on what to install (the peers' --no-deps line)
        raise
    except Exception as exc:
        raise EngineImportError(
            f"engine module {spec!r} raised while being imported: {type(exc).__name__}: {exc}"
        ) from exc


def _module(spec):
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownNameError(f"engine {spec!r} is not an engine name; {_forms_hint()}")
    spec = spec.strip()
    if spec in BUILT_IN and importlib.util.find_spec(BUILT_IN[spec].module) is not None:
        return _built_in(spec)
    if spec in PEERS and _present(PEERS[spec].module):
        # the adapter raises EngineUnavailableError, with the install line, when its library is missing
        return _from_module_name(PEERS[spec].module)
    points = _entry_points()
    if spec in points:
        try:
            return points[spec].load()
        except ImportError as exc:
            raise EngineUnavailableError(
                f"engine {spec!r} (registered as {points[spec].value}) cannot be imported: {exc}"
            ) from None
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        return _from_file(spec)
    if _MODULE_NAME.match(spec):
        return _from_module_name(spec)
    raise UnknownNameError(f"unknown engine {spec!r}; {_forms_hint()}")


def load(spec):
    """The engine module named by ``spec`` (a built-in or registered name, a module name or a ``.py`` path).

    Raises ``UnknownNameError`` (nothing of that name; the message lists the valid forms), ``EngineUnavailableError``
    (a package it needs is not installed; says what to install) or ``EngineImportError`` (it raised on import, or it
    exposes none of the contract's functions).
    """
    from . import contract  # the contract names every function an engine may expose

    module = _module(spec)
    if not implemented(module):
        raise EngineImportError(
            f"engine {spec!r} ({getattr(module, '__file__', module.__name__)}) "
            "exposes none of the contract's functions "
            f"({', '.join(contract.QUANTITIES)}); define at least one, e.g. def gradient(net, X, Y): ..."
        )
    return module


def implemented(module):
    """The names of the contract's quantities, released or pending (``contract.QUANTITIES``, ``contract.PENDING``),
    that ``module`` implements, in the contract's order."""
    from . import contract

    return [
        name
        for name, quantity in {**contract.QUANTITIES, **contract.PENDING}.items()
        if quantity.implemented_by(module)
    ]


def label(spec):
    """A short name for reports: the name itself, or a file's name without its folder."""
    spec = spec.strip()
    return os.path.basename(spec) if spec.endswith(".py") else spec
