"""``python -m xval check ENGINE``: the whole case table, every quantity the engine implements, against the
references; one verdict line per case as it finishes, then the failures named in the network's terms, a diagnosis
and a one-line summary (``xval.report`` writes them).

A verdict needs a comparison: a row passes only where a reference produced a finite value and the engine's value is
within tolerance of it (or the arbiter finds the difference below the rounding floor). An outside engine runs in a
child process with a time limit per call, on read-only copies of its inputs (``xval.isolation``).

Exit status (``EXIT_*``): 0 when everything the engine implements was compared and agrees; 1 when anything disagrees
or raises; 2 for a usage error (an engine that cannot be found or imported, an unknown quantity, case or dtype, a bad
``XVAL_*`` setting); 3 when nothing disagrees but something was not compared (no reference could compute a call, or
the engine implements none of the requested quantities); 130 when interrupted.
"""

from dataclasses import dataclass, field

import numpy as np

from . import cases as case_table, compare, config, contract, diagnosis, engines, isolation, verdict
from .errors import (
    ArgumentError,
    EngineInputWriteError,
    EngineProcessError,
    EngineResultError,
    EngineTimeoutError,
    EngineUnavailableError,
    NonFiniteError,
    XvalError,
)

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_CHECKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
STATUSES = ("pass", "fail", "error", "not checked", "unsupported", "not implemented")


@dataclass
class Row:
    """One (case, quantity) of a check: the worst relative error over its calls against each reference (``None``:
    that reference produced no value; ``reasons`` says why), the status (``STATUSES``) and, unless it passed
    plainly, what happened (``detail``). A failure also keeps its worst ``entries`` (named in the network's terms),
    the parameter ``tensors`` whose entries are off, the ``relations`` of its values to the reference's
    (``diagnosis.analyse``), the calls that failed and the arbiter's one-line ``arbiter`` summary."""

    case: str
    quantity: str
    tolerance: float
    errors: dict = field(default_factory=dict)
    status: str = "pass"
    detail: str = ""
    reasons: dict = field(default_factory=dict)
    entries: list = field(default_factory=list)
    tensors: list = field(default_factory=list)
    relations: list = field(default_factory=list)
    failed_calls: list = field(default_factory=list)
    arbiter: str = ""


@dataclass
class CaseInfo:
    """What a case is made of, for the diagnosis: activation per layer, loss, widths, batch, regime tags, and the
    labels of its parameter tensors (``layer 0 W``)."""

    name: str
    activations: tuple
    loss: str
    sizes: tuple
    n: int
    tags: tuple
    tensors: tuple

    @property
    def depth(self):
        return len(self.sizes) - 1


@dataclass
class Report:
    engine: str
    against: list
    dtype: str
    rows: list
    notes: list
    cases: dict = field(default_factory=dict)  # case id -> CaseInfo, in table order
    timeout: float = isolation.DEFAULT_TIMEOUT
    requested: list = field(default_factory=list)  # the quantities asked for
    total_cases: int = 0
    implemented: list = field(default_factory=list)  # the contract quantities the engine implements

    @property
    def counts(self):
        tally = {status: 0 for status in STATUSES}
        for row in self.rows:
            tally[row.status] += 1
        return tally

    @property
    def checked(self):
        """How many rows were compared (passed or failed; an error counts as a failure)."""
        counts = self.counts
        return counts["pass"] + counts["fail"] + counts["error"]

    @property
    def outcome(self):
        """``fail`` (something disagrees or raises), ``not checked`` (nothing does, but something, or everything,
        was not compared) or ``pass``."""
        counts = self.counts
        if counts["fail"] or counts["error"]:
            return "fail"
        if counts["not checked"] or not self.checked:
            return "not checked"
        return "pass"

    @property
    def ok(self):
        return self.outcome == "pass"

    @property
    def exit_code(self):
        return {"pass": EXIT_PASS, "fail": EXIT_FAIL, "not checked": EXIT_NOT_CHECKED}[self.outcome]


def validate_settings(env=None):
    """Read every ``XVAL_*`` setting once, so that a bad value stops the check before any work (``ConfigError``);
    ``XVAL_DEVICE=cuda`` also needs torch or jax to see a GPU."""
    for setting in (
        config.backends,
        config.device,
        config.dtype,
        config.max_bytes,
        config.array_library,
        config.arbiter_digits,
        config.threads,
        config.device_present,
    ):
        setting(env)


class _References:
    """The references' results, computed once per (case, reference, call) on read-only copies of the inputs, each a
    float64 array of the contract's shape with finite entries, or the exception that says why there is none. A
    reference's blocks come from its full Hessian when it has one (one compilation per case for jax instead of one
    per layer pair)."""

    def __init__(self, modules):
        self.modules = modules
        self._cache = {}

    def value(self, name, problem, call):
        key = (problem.name, name, call.label)
        if key not in self._cache:
            self._cache[key] = self._compute(name, problem, call)
        return self._cache[key]

    def _derived(self, name, problem, call):
        """``call``'s value from another quantity of the reference (``contract.derive``), or ``None``."""

        def value_of(source_call):
            if not source_call.quantity.implemented_by(self.modules[name]):
                return None
            value = self.value(name, problem, source_call)
            if isinstance(value, Exception):
                raise value
            return value

        return contract.derive(call, value_of)

    def _compute(self, name, problem, call):
        module = self.modules[name]
        try:
            # A layer quantity (a block) comes from the reference's whole matrix when it has one: one compilation per
            # case for jax instead of one per layer pair; a quantity the reference lacks, from what it has.
            if call.quantity.layers or not call.quantity.implemented_by(module):
                derived = self._derived(name, problem, call)
                if derived is not None:
                    return np.asarray(derived, dtype=np.float64)
            if not call.quantity.implemented_by(module):
                return NotImplementedError(f"{name} does not implement {call.quantity.name}")
            value = isolation.evaluate(module, call)
        except Exception as exc:  # a reference that cannot compute a call: its column says so
            return exc
        if not np.isfinite(compare.flat_parts(value)).all():
            return NonFiniteError(f"{name} returned non-finite values for {call.label}")
        return value


def _arbitrate(row, label, failing, references, names, problem):
    """The arbiter's verdict on the failing calls of ``row``, in turn, until one finds the engine wrong (or cannot
    decide): then the row fails with the arbiter's report; when none does (a reference is wrong, or the difference
    is below the rounding floor) the row passes, the report kept in its detail."""
    for call, ours in failing:
        results = {label: ours}
        for name in names:
            theirs = references.value(name, problem, call)
            if not isinstance(theirs, Exception):
                results[name] = theirs
        judged = verdict.judge(call, results, row.tolerance, problem.X.dtype.name)
        row.arbiter = judged.summary()
        if not judged.decided or label in judged.wrong:
            row.detail += "\n      " + judged.text().replace("\n", "\n      ")
            return
        row.detail = f"{call.label}: " + judged.text().replace("\n", "\n      ")
    row.status = "pass"


def _failure(row, status, text):
    row.status, row.detail = status, text
    return row


def _check_row(engine, references, names, problem, quantity, dtype, label="engine", timed_out=None):
    """The ``Row`` of ``quantity`` on ``problem``: every call (every layer pair of a block) against each reference;
    a disagreement is judged by the arbiter (``_arbitrate``). ``timed_out`` (quantity -> case) remembers calls that
    ran past the time limit, so that a hanging quantity costs one time limit, not one per case."""
    row = Row(problem.name, quantity.name, quantity.tolerance(dtype))
    if not quantity.implemented_by(engine):
        row.status = "not implemented"
        return row
    if timed_out is not None and quantity.name in timed_out:
        return _failure(row, "error", f"not run: {quantity.name} ran past the time limit on {timed_out[quantity.name]}")
    failing, unchecked, worst = [], [], None
    for call in quantity.calls(problem, every_block=True):
        try:
            ours = isolation.evaluate(engine, call)
        except (EngineResultError, EngineInputWriteError) as exc:
            return _failure(row, "fail", str(exc))
        except Exception as exc:
            if isolation.failure_type(exc) in ("UnsupportedError", "UnsupportedNetworkError"):  # declared by the engine
                return _failure(
                    row,
                    "unsupported",
                    f"the engine does not support {call.label} here: {isolation.describe_failure(exc)}",
                )
            if isolation.failure_type(exc) == "MemoryGuardError":  # the user's XVAL_MAX_BYTES: a refusal, no verdict
                return _failure(
                    row, "not checked", f"the engine refused {call.label}: {isolation.describe_failure(exc)}"
                )
            if isinstance(exc, EngineTimeoutError) and timed_out is not None:
                timed_out[quantity.name] = problem.name
            if isinstance(exc, EngineProcessError) and not isinstance(exc, isolation.RemoteError):
                return _failure(row, "error", str(exc))  # "hvp: its process was killed by SIGSEGV ..."
            return _failure(row, "error", f"{call.label} raised {isolation.describe_failure(exc)}")
        compared = False
        for name in names:
            theirs = references.value(name, problem, call)
            if isinstance(theirs, Exception):
                row.errors.setdefault(name, None)
                row.reasons.setdefault(name, isolation.describe_failure(theirs))
                continue
            error = compare.relative_error(ours, theirs)
            if row.errors.get(name) is None or error > row.errors[name]:
                row.errors[name] = error
            compared = True
            if error <= row.tolerance:
                continue
            if not failing or failing[-1][0] is not call:  # analysed against the first reference it fails against
                failing.append((call, ours))
                row.failed_calls.append(call.label)
                tensors, relations = diagnosis.analyse(call, ours, theirs, row.tolerance)
                row.tensors = sorted(set(row.tensors) | set(tensors), key=diagnosis.tensor_order)
                row.relations += [r for r in relations if r not in row.relations]
            if worst is None or error > worst[0]:
                worst = (error, call, ours, theirs, name)
        if not compared:
            unchecked.append(call.label)
    if worst is not None:
        error, call, ours, theirs, name = worst
        row.status = "fail"
        row.entries = [
            dict(
                call=call.label,
                entry=compare.entry_name(call, index),
                index=list(index),
                engine=value,
                reference=expected,
                reference_name=name,
                difference=difference,
            )
            for index, value, expected, difference in compare.worst(ours, theirs)
        ]
        named = "\n      ".join(compare.worst_entries(ours, theirs, call=call))
        row.detail = (
            f"{call.label} vs {name}: relative error {error:.3g} > tolerance {row.tolerance:.1g}\n      {named}"
        )
        _arbitrate(row, label, failing, references, names, problem)
    elif unchecked:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in row.reasons.items())
        calls = unchecked[0] if len(unchecked) == 1 else f"{len(unchecked)} calls ({', '.join(unchecked[:3])}, ...)"
        row.status, row.detail = "not checked", f"no reference computed {calls}: {reasons}"
    return row


def case_info(problem, case):
    """The ``CaseInfo`` of ``problem`` (built from ``case``)."""
    net = problem.net
    tags = tuple(tag for tag in (case.get("tag"), case.get("targets")) if tag and tag != "regression")
    tensors = tuple(f"layer {layer} {name}" for layer, name, _ in compare.parameter_tensors(net))
    if net.is_mlp:
        activations, sizes = tuple(net.activations), tuple(net.sizes)
    else:  # the activations anywhere in the sequence, and the widths in and out of each parameter layer
        activations = tuple(layer.name for layer in net.layers if getattr(layer, "kind", "") == "activation")
        widths = [int(np.prod(shape)) for shape in net.shapes]
        sizes = (widths[0],) + tuple(
            widths[i + 1]
            for i, layer in enumerate(net.layers)
            if any(
                isinstance(value, int) and not isinstance(value, bool)
                for value in (getattr(layer, "weight", None), getattr(layer, "bias", None))
            )
        )
    return CaseInfo(problem.name, activations, net.loss, sizes, int(problem.X.shape[0]), tags, tensors)


def _quantities(names):
    """The quantities named (released or pending), or ``None`` for the default (``default_quantities``)."""
    if names is None:
        return None
    if not names:
        raise ArgumentError(
            "no quantity selected (--quantities is empty); name at least one of: "
            f"{', '.join(contract.QUANTITIES)}, or leave --quantities out for all"
        )
    return [contract.QUANTITIES[name] if name in contract.QUANTITIES else contract.quantity(name) for name in names]


def default_quantities(engine):
    """Every released quantity (those the engine lacks are reported as skipped) and every pending one the engine
    implements (``contract.PENDING``: checked wherever the engine has it, not counted against it where it has not)."""
    return list(contract.QUANTITIES.values()) + [
        quantity for quantity in contract.PENDING.values() if quantity.implemented_by(engine)
    ]


def _dtype(dtype):
    if dtype is None:
        return config.dtype()
    if dtype not in config.DTYPES:
        raise ArgumentError(f"dtype {dtype!r} is not supported; use one of: {', '.join(config.DTYPES)}")
    return dtype


def _open_references(against, engine_spec, engine, timeout, notes):
    modules = {}
    for name in against:
        if name.strip() == engine_spec.strip():
            notes.append(f"reference {name!r} is the engine under check: not compared with itself")
            continue
        try:
            module = isolation.open_engine(name, timeout)
        except EngineUnavailableError as exc:
            notes.append(f"reference {name!r} skipped: {exc}")
            continue
        if module is engine:
            notes.append(f"reference {name!r} is the engine under check: not compared with itself")
            continue
        modules[engines.label(name)] = module
    return modules


def run_check(
    engine_spec,
    against=("manual", "torch", "jax"),
    quantities=None,
    cases=None,
    dtype=None,
    timeout=isolation.DEFAULT_TIMEOUT,
    on_start=None,
    on_case=None,
    on_row=None,
):
    """Check the engine ``engine_spec`` on the case table; returns a ``Report``.

    ``dtype`` ``None``: ``XVAL_DTYPE`` (default float64). ``timeout``: seconds per call of an isolated engine.
    ``on_start(report)`` is called once the references are loaded (the report has no rows yet), ``on_case(report,
    index, rows)`` after each case with that case's rows, ``on_row(report, index, row)`` after each row, so that a
    caller can print as the check goes.

    Raises ``ConfigError`` for a bad ``XVAL_*`` setting, ``UnknownNameError``/``EngineImportError``/
    ``EngineUnavailableError`` for an engine that cannot be used, ``UnknownNameError`` for an unknown quantity or case
    id, ``ArgumentError`` for an empty selection, ``XvalError`` when no reference can be loaded.
    """
    validate_settings()
    dtype = _dtype(dtype)
    quantities = _quantities(quantities)
    chosen_cases = case_table.select(cases)
    if not chosen_cases:
        raise ArgumentError(
            "no case selected (--cases is empty); name case ids (python -m xval cases lists them), "
            "or leave --cases out for all"
        )
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ArgumentError(f"timeout is {timeout!r}, but it must be a number of seconds > 0, e.g. --timeout 60")
    engine = isolation.open_engine(engine_spec, timeout)
    notes, modules = [], {}
    try:
        quantities = default_quantities(engine) if quantities is None else quantities
        modules = _open_references(against, engine_spec, engine, timeout, notes)
        if not modules:
            raise XvalError(
                f"no reference engine could be loaded from --against {','.join(against)}; "
                + ("; ".join(notes) if notes else "name at least one, e.g. --against manual,torch,jax")
            )
        report = Report(
            engines.label(engine_spec),
            list(modules),
            dtype,
            [],
            notes,
            timeout=timeout,
            requested=[quantity.name for quantity in quantities],
            total_cases=len(chosen_cases),
            implemented=engines.implemented(engine),
        )
        if on_start is not None:
            on_start(report)
        references, timed_out = _References(modules), {}
        for index, case in enumerate(chosen_cases):
            problem = case_table.problem(case, dtype)
            report.cases[problem.name] = case_info(problem, case)
            rows = []
            for quantity in quantities:
                rows.append(
                    _check_row(
                        engine,
                        references,
                        list(modules),
                        problem,
                        quantity,
                        dtype,
                        engines.label(engine_spec),
                        timed_out,
                    )
                )
                if on_row is not None:
                    on_row(report, index, rows[-1])
            report.rows += rows
            if on_case is not None:
                on_case(report, index, rows)
        return report
    finally:
        for module in [engine, *modules.values()]:
            isolation.close(module)


def format_report(report, verbose=False):
    """The whole text of a check, as ``python -m xval check`` prints it (``xval.report``)."""
    from . import report as text

    return text.format_report(report, verbose)


def write_json(report, path):
    """The report as JSON at ``path`` (``xval.report``)."""
    from . import report as text

    return text.write_json(report, path)


__all__ = [
    "Row",
    "Report",
    "CaseInfo",
    "run_check",
    "format_report",
    "write_json",
    "validate_settings",
    "EXIT_PASS",
    "EXIT_FAIL",
    "EXIT_USAGE",
    "EXIT_NOT_CHECKED",
    "EXIT_INTERRUPTED",
]
