"""``python -m xval conformance``: the field's curvature libraries (or any engines) over the whole case table, in
float64 and float32, each quantity they compute judged against the references, written as a matrix of library x
quantity x case family (``xval.conformance_report`` writes ``docs/conformance.md`` and its JSON twin).

Every entry is one (library, dtype, case, quantity) with a status:

- ``pass`` / ``fail``: ``xval.check``'s verdict (every call, every layer pair, against each reference; a disagreement
  judged by the arbiter), with the worst relative error against the arbiter where it answers, else against the
  references that answered (``reference`` names them);
- ``error``: the library raised something other than a declared refusal;
- ``unsupported``: the library declared it cannot (``UnsupportedError``, with its own message in ``detail``);
- ``not checked``: no reference produced a value, or an estimator too noisy to see a factor 2;
- ``convention``: the library computes the quantity only in its own form (``CONVENTIONS`` of the adapter, in
  ``detail``), which the contract's check does not claim.

Stochastic estimators (``xval.estimators``: ``mc_ggn``, ``hutchinson_hessian_trace``, ...) are run over ``seeds``
seeds and judged as statistics against the exact value; their ``error`` is the number of standard errors between
their mean and the exact value.
"""

import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from . import cases as case_table, check, compare, config, contract, engines, estimators, isolation
from .errors import ArgumentError, EngineUnavailableError, XvalError

DTYPES = ("float64", "float32")
AGAINST = ("arbiter", "manual", "torch", "jax")
STATUSES = ("pass", "fail", "error", "unsupported", "not checked", "convention")
CONTRACT, ESTIMATOR, CONVENTION = "contract", "estimator", "convention"


@dataclass
class Entry:
    """One library's result on one quantity (or estimator) of one case in one dtype. ``error``: the worst relative
    error against ``reference`` (contract quantities) or the standard errors off (estimators); ``None`` when nothing
    was compared. ``detail``: why, unless it passed plainly."""

    library: str
    dtype: str
    case: str
    family: str
    quantity: str
    kind: str
    status: str
    error: Optional[float] = None
    reference: str = ""
    detail: str = ""


@dataclass
class Library:
    """A library asked for: its name, version, and whether it ran (``checked``), is not installed (``missing``, with
    the install line in ``note``) or could not be imported (``unusable``)."""

    name: str
    version: str = ""
    status: str = "checked"
    note: str = ""
    implemented: list = field(default_factory=list)
    estimators: list = field(default_factory=list)
    conventions: dict = field(default_factory=dict)


@dataclass
class Matrix:
    libraries: list
    dtypes: list
    against: list
    families: dict  # family -> case ids, in table order
    entries: list = field(default_factory=list)
    seeds: int = estimators.SEEDS
    tolerances: dict = field(default_factory=dict)
    seconds: float = 0.0

    def checked(self):
        return [library for library in self.libraries if library.status == "checked"]


def family(case):
    """The family of a case: a layer case's name, or ``mlp-<hidden activations>-<loss>`` (``mlp-tanh-mse``,
    ``mlp-relu+sigmoid+softplus+tanh-cross_entropy``; the identity only when it is the only one)."""
    if "layers" in case:
        return case["name"]
    names = [case["activations"]] if isinstance(case["activations"], str) else list(case["activations"])
    hidden = sorted({name for name in names if name != "identity"}) or ["identity"]
    return f"mlp-{'+'.join(hidden)}-{case['loss']}"


def families(chosen):
    grouped = {}
    for case in chosen:
        grouped.setdefault(family(case), []).append(case_table.case_id(case))
    return grouped


def _all_quantities():
    return {**contract.QUANTITIES, **contract.PENDING}


# ---- one library on one problem ---------------------------------------------------------------------------------
def _reference(row, names):
    """``(error, reference)`` of a checked row: against the arbiter when it answered, else the worst over the
    references that did."""
    if row.errors.get("arbiter") is not None:
        return row.errors["arbiter"], "arbiter"
    answered = [name for name in names if row.errors.get(name) is not None]
    if not answered:
        return None, ""
    return max(row.errors[name] for name in answered), ", ".join(answered)


def _contract_entries(engine, library, references, names, problem, dtype, timed_out):
    entries = []
    for quantity in _all_quantities().values():
        if not quantity.implemented_by(engine):
            continue
        row = check._check_row(engine, references, names, problem, quantity, dtype, library.name, timed_out)
        error, reference = _reference(row, names)
        status = row.status
        detail = row.detail if status != "pass" else ""
        if status == "unsupported":
            detail = detail.split(": ", 1)[-1].removeprefix("UnsupportedError: ")
        if status == "not checked":
            detail = detail or "; ".join(f"{name}: {reason}" for name, reason in row.reasons.items())
        entries.append(
            Entry(library.name, dtype, problem.name, "", quantity.name, CONTRACT, status, error, reference, detail)
        )
    return entries


def _exact(references, names, problem, call):
    """``(value, reference name)`` of ``call`` from the first reference that answers, else ``(None, reasons)``."""
    reasons = []
    for name in names:
        value = references.value(name, problem, call)
        if not isinstance(value, Exception):
            return value, name
        reasons.append(f"{name}: {isolation.describe_failure(value)}")
    return None, "; ".join(reasons)


def _run_estimator(engine, function, call, problem, seed, samples):
    """One run of the estimator ``function`` for ``call`` (its arguments, then ``seed`` and ``samples``)."""
    layers = [str(call.argument(name)) for name in call.quantity.layers]
    label = f"{function}({', '.join(layers + [f'seed={seed}'])})"
    arguments = tuple(call.arguments) + (seed, samples)
    return isolation.evaluate_function(engine, function, label, problem.net, arguments, call.shape)


_WORSE = {"pass": 0, "not checked": 1, "fail": 2}


def _estimator_entry(engine, library, function, quantity, references, names, problem, dtype, seeds):
    """The statistical verdict on ``function`` (an estimator of ``quantity``) on the problem's call of ``quantity``
    (for a layer quantity, the problem's default layer: ``seeds`` runs per layer would cost a run per layer)."""
    method, _ = estimators.parse(function, _all_quantities())
    samples = estimators.METHODS[method]
    entry = Entry(library.name, dtype, problem.name, "", function, ESTIMATOR, "pass")
    judged = []
    for call in quantity.calls(problem):
        exact, source = _exact(references, names, problem, call)
        if exact is None:
            entry.status, entry.detail = "not checked", f"no reference computed {call.label}: {source}"
            return entry
        try:
            values = [_run_estimator(engine, function, call, problem, seed, samples) for seed in range(seeds)]
            again = _run_estimator(engine, function, call, problem, 0, samples)
        except Exception as exc:
            declared = isolation.failure_type(exc) in ("UnsupportedError", "UnsupportedNetworkError")
            entry.status = "unsupported" if declared else "error"
            entry.detail = isolation.describe_failure(exc).removeprefix("UnsupportedError: ")
            return entry
        if any(not np.array_equal(a, b) for a, b in zip(estimators.parts(values[0]), estimators.parts(again))):
            entry.status, entry.detail = "fail", f"{call.label}: seed 0 gave a different value the second time"
            return entry
        judged.append((estimators.judge(values, exact, rtol=quantity.tolerance(dtype)), call, source))
    statistic, call, source = max(judged, key=lambda item: (_WORSE[item[0].status], item[0].z))
    entry.status, entry.error, entry.reference = statistic.status, statistic.z, source
    entry.detail = "" if statistic.status == "pass" else f"{call.label}: {statistic.text()}"
    return entry


def library_entries(engine, library, references, names, problem, dtype, seeds, timed_out):
    """Every entry of ``library`` (its ``engine``, open) on ``problem`` in ``dtype``."""
    entries = _contract_entries(engine, library, references, names, problem, dtype, timed_out)
    quantities = _all_quantities()
    for function in library.estimators:
        _, name = estimators.parse(function, quantities)
        entries.append(
            _estimator_entry(engine, library, function, quantities[name], references, names, problem, dtype, seeds)
        )
    for name, text in library.conventions.items():
        if name not in library.implemented:
            entries.append(Entry(library.name, dtype, problem.name, "", name, CONVENTION, "convention", detail=text))
    return entries


# ---- the whole matrix -------------------------------------------------------------------------------------------
def _open(name, timeout):
    """``(engine or None, Library)``: the library opened in its own process, or why not."""
    library = Library(engines.label(name), engines.version(name))
    try:
        engine = isolation.open_engine(name, timeout)
    except EngineUnavailableError as exc:
        library.status, library.note = "missing", str(exc)
        return None, library
    except XvalError as exc:
        library.status, library.note = "unusable", str(exc)
        return None, library
    library.implemented = engines.implemented(engine)
    quantities = _all_quantities()
    library.estimators = [name for name in isolation.functions_of(engine) if estimators.parse(name, quantities)]
    library.conventions = isolation.conventions_of(engine)
    return engine, library


def _open_references(against, timeout, notes):
    modules = {}
    for name in against:
        try:
            modules[engines.label(name)] = isolation.open_engine(name, timeout)
        except EngineUnavailableError as exc:
            notes.append(f"reference {name} skipped: {exc}")
    if not modules:
        raise XvalError(f"no reference could be loaded from {', '.join(against)}: " + "; ".join(notes))
    return modules


def run(
    libraries=None,
    cases=None,
    dtypes=DTYPES,
    against=AGAINST,
    seeds=estimators.SEEDS,
    timeout=isolation.DEFAULT_TIMEOUT,
    on_start=None,
    on_entries=None,
):
    """The ``Matrix`` of ``libraries`` (engine names; default every peer, ``engines.PEERS``) over ``cases`` (case
    ids; default the whole table) in each of ``dtypes``. ``on_start(matrix, total)`` is called once the libraries
    are open (``total``: the (dtype, case, library) steps), ``on_entries(matrix, step, dtype, case, library, entries)``
    after each step. A library that is not installed is listed as missing, with its install line."""
    check.validate_settings()
    names = list(libraries) if libraries is not None else engines.peer_names()
    if not names:
        raise ArgumentError("no library selected (--libraries is empty); name at least one, e.g. backpack")
    for dtype in dtypes:
        if dtype not in config.DTYPES:
            raise ArgumentError(f"dtype {dtype!r} is not supported; use one of: {', '.join(config.DTYPES)}")
    chosen = case_table.select(cases)
    if not chosen:
        raise ArgumentError("no case selected (--cases is empty); python -m xval cases lists them")
    started, notes, opened = time.monotonic(), [], {}
    matrix = Matrix(
        [],
        list(dtypes),
        [],
        families(chosen),
        seeds=seeds,
        tolerances={dtype: compare.TOLERANCES[dtype] for dtype in dtypes},
    )
    modules = {}
    try:
        for name in names:
            engine, library = _open(name, timeout)
            matrix.libraries.append(library)
            if engine is not None:
                opened[library.name] = engine
        modules = _open_references(against, timeout, notes)
        matrix.against = list(modules)
        case_family = {case_id: name for name, ids in matrix.families.items() for case_id in ids}
        total, step = len(dtypes) * len(chosen) * len(opened), 0
        if on_start is not None:
            on_start(matrix, total)
        for dtype in dtypes:
            references, timed_out = check._References(modules), {name: {} for name in opened}
            for case in chosen:
                problem = case_table.problem(case, dtype)
                for library in matrix.checked():
                    entries = library_entries(
                        opened[library.name],
                        library,
                        references,
                        list(modules),
                        problem,
                        dtype,
                        seeds,
                        timed_out[library.name],
                    )
                    for entry in entries:
                        entry.family = case_family[problem.name]
                    matrix.entries += entries
                    step += 1
                    if on_entries is not None:
                        on_entries(matrix, step, dtype, problem.name, library, entries)
        matrix.seconds = time.monotonic() - started
        return matrix
    finally:
        for engine in [*opened.values(), *modules.values()]:
            isolation.close(engine)


# ---- JSON -------------------------------------------------------------------------------------------------------
def to_json(matrix):
    """The matrix as plain data (non-finite errors as strings)."""

    def plain(value):
        return value if value is None or np.isfinite(value) else str(value)

    return {
        "libraries": [asdict(library) for library in matrix.libraries],
        "dtypes": matrix.dtypes,
        "against": matrix.against,
        "families": matrix.families,
        "seeds": matrix.seeds,
        "tolerances": matrix.tolerances,
        "entries": [{**asdict(entry), "error": plain(entry.error)} for entry in matrix.entries],
    }


def from_json(payload):
    """The ``Matrix`` written by ``to_json``."""
    entries = [
        Entry(**{**item, "error": None if item["error"] is None else float(item["error"])})
        for item in payload["entries"]
    ]
    return Matrix(
        [Library(**item) for item in payload["libraries"]],
        payload["dtypes"],
        payload["against"],
        payload["families"],
        entries,
        payload["seeds"],
        payload["tolerances"],
    )
