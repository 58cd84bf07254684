"""The sweep: for every planned point, check that the engines agree, then time each and measure its peak
memory; record every point (measured, failed with its reason, or skipped with a note), saving after each. Then a
point whose time is far off its neighbours' trend (``fit.outliers``) is measured once more before any fit
(``remeasure_outliers``), and the point says so.

An engine's value is checked against another engine of the suite that computed it (torch, jax, manual, in that
order), else against a peer that did (on the entries it covers), else against the value a reference engine derives
from another quantity it has (``contract.derive``: a diagonal from its Hessian, the finite-difference oracle's
gradient), while that source stays small. A point none of them can check is measured all the same and recorded as
not validated (``validated_against`` None), never as agreeing. An engine that refuses a network or a quantity
(``UnsupportedError``, ``ArgumentError``, a peer that cannot take the network) is skipped with its reason, at that
size and the larger ones of the series.
"""

import time
import traceback

import numpy as np

from xval import config, contract, engines as registry, memory as guard
from xval.errors import ArgumentError, EngineUnavailableError

from . import fit, memory, peers, plan, quantities, results, timing
from .machine import engine_device

REFERENCE_ORDER = ("torch", "jax", "manual")  # the independent references first; manual is under test

# A value derived from another quantity (a Hessian for its diagonal) only while that source is at most this large.
DERIVE_BYTES = 64 * 2**20

# Outputs larger than this are validated on every k-th row, k chosen to compare about this many bytes: an 11 GB GPU
# block would otherwise be copied to the host once per engine and compared there, which takes longer than timing it.
VALIDATE_BYTES = 256 * 2**20


def validation_stride(output_bytes, limit=None):
    """``k``: validate every ``k``-th row of an output of ``output_bytes`` (1: all of it)."""
    limit = VALIDATE_BYTES if limit is None else limit
    return max(1, -(-int(output_bytes) // limit))


def dense_budget_bytes(env=None):
    """The largest dense output a point may write: ``XVAL_MAX_BYTES`` if set, else a quarter of available RAM
    (engines such as ``torch.func.hessian`` need several times their output while computing it)."""
    import psutil

    cap = config.max_bytes(env)
    budget = psutil.virtual_memory().available // 4
    return min(cap, budget) if cap else budget


def _fits(nbytes, budget):
    """Whether a dense array of ``nbytes`` fits: under the suite's memory guard and this run's budget."""
    return guard.fits(nbytes) and nbytes <= budget


class Runner:
    """Runs planned points. ``save(points)`` is called after every point; ``done`` holds keys to skip; ``progress``
    (optional) has ``advance(n, label)``, called as points are recorded or skipped."""

    def __init__(self, engine_names, device, dtype, threads, settings, save, done=(), progress=None):
        self.engine_names = list(engine_names)
        self.device, self.dtype, self.threads = device, dtype, threads
        self.settings = settings
        self.save = save
        self.done = set(done)
        self.progress = progress
        self.points = []
        self.too_slow = {}  # (sweep, quantity, engine) -> reason; larger sizes of it are skipped (too slow, refused)
        self.modules = {}
        for name in self.engine_names:
            if name in peers.PEERS:
                continue
            try:
                self.modules[name] = registry.load(name)
            except EngineUnavailableError as exc:
                self.modules[name] = exc

    def provides(self, name, quantity):
        """Whether the engine or peer ``name`` has a function (a staged call) for ``quantity``; an engine that could
        not be loaded is planned all the same, and its points say why it failed."""
        if name in peers.PEERS:
            return peers.provides(name, quantity)
        module = self.modules.get(name)
        return module is None or isinstance(module, Exception) or quantities.provides(module, quantity)

    # ---- one record ---------------------------------------------------------------------------
    def _record(self, base, engine, status, reason="", **fields):
        key = results.point_key(base["sweep"], base["sizes"], base["quantity"], engine, self.device, self.dtype)
        point = dict(
            key=key,
            status=status,
            reason=reason,
            engine=engine,
            device=engine_device(engine, self.device),
            dtype=self.dtype,
            blas_threads=self.threads,
            **base,
            **fields,
        )
        self.points.append(point)
        self.save(self.points)
        if self.progress is not None:
            self.progress.advance(1, f"{base['sweep']} {base['quantity']} {engine} |W|={base['n_params']}")
        return point

    def key(self, base, engine):
        return results.point_key(base["sweep"], base["sizes"], base["quantity"], engine, self.device, self.dtype)

    def pending(self, sweep, value, quantity, names):
        """How many of a planned group's points are still to measure (not in ``done``)."""
        sizes = sweep.sizes(value)
        return sum(
            results.point_key(sweep.name, sizes, quantity, name, self.device, self.dtype) not in self.done
            for name in names
        )

    # ---- one (sweep, size, quantity) group ------------------------------------------------------
    def run_group(self, sweep, value, quantity, names):
        sizes = sweep.sizes(value)
        net = sweep.network(value, self.dtype)
        batch = quantities.batch_size(quantity, self.settings.get("quick", False))
        width, depth = sweep.shape(value)
        base = dict(
            sweep=sweep.name,
            quantity=quantity,
            width=width,
            depth=depth,
            sizes=sizes,
            n_params=net.n_params,
            batch=batch,
            output_bytes=quantities.output_bytes(quantity, net, batch),
        )
        if quantity in plan.MEMORY_BOUNDED:  # P N n_L entries: every parameter's per-sample output rows
            base["memory_bound_bytes"] = net.n_params * batch * net.output_size * net.dtype.itemsize
        todo = [name for name in names if self.key(base, name) not in self.done]
        if self.progress is not None and len(names) > len(todo):
            self.progress.advance(len(names) - len(todo))
        if not todo:
            return
        budget = dense_budget_bytes()
        dense = contract.quantity(quantity).dense
        if dense and not _fits(base["output_bytes"], budget):
            for name in todo:
                self._record(
                    base,
                    name,
                    "skipped",
                    f"dense output of {base['output_bytes'] / 1e9:.2f} GB would "
                    f"not fit (budget {budget / 1e9:.2f} GB: XVAL_MAX_BYTES or a quarter of available memory)",
                )
            return
        X, Y, v = quantities.data(net, batch)
        stride = validation_stride(base["output_bytes"]) if dense else 1
        runs = {}
        for name in todo:
            slow = self.too_slow.get((sweep.name, quantity, name))
            if slow:
                self._record(base, name, "skipped", slow)
            else:
                self._release()
                runs[name] = self._first_call(name, quantity, net, X, Y, v, stride)
        # Reference engines of this group measured by an earlier run (--resume) still serve as checks.
        for name in REFERENCE_ORDER:
            if name in names and name not in todo:
                runs[name] = dict(self._first_call(name, quantity, net, X, Y, v, stride), measure=False)
        call = quantities.call_of(quantity, net, batch, X, Y, v)
        verdicts = {
            name: self._validate(name, call, run, runs, stride)
            for name, run in runs.items()
            if run.get("measure", True) and "output" in run
        }
        if stride > 1:
            for fields, _ in verdicts.values():
                fields["validated_rows"] = (
                    f"rows 0, {stride}, {2 * stride}, ... (1 in {stride}; the output has "
                    f"{base['output_bytes'] / 1e9:.3g} GB)"
                )
        for run in runs.values():
            run.pop("output", None)  # free the outputs before timing
        for name, run in runs.items():
            if not run.get("measure", True):
                continue
            if "unsupported" in run:
                reason = f"unsupported: {run['unsupported']}"
                self.too_slow[(sweep.name, quantity, name)] = reason
                self._record(base, name, "skipped", reason)
                continue
            if "error" in run:
                self._record(
                    base, name, "failed", run["error"], **({"first_call_s": run["first"]} if "first" in run else {})
                )
                continue
            checked, problem = verdicts[name]
            if problem:
                self._record(base, name, "failed", problem, **checked)
                continue
            self._release()
            self._measure(base, name, run, checked, sweep.name)

    def _first_call(self, name, quantity, net, X, Y, v, stride=1):
        """The warm-up call, which includes jit compilation: timed apart, its output kept for validation (rows 0,
        ``stride``, ``2 stride``, ...: cut on the engine's device when it returns one array, else from the assembled
        output; ``stride=0``: none kept).

        Returns ``{"call", "output", "covered", "first"}``, or ``{"error"}`` with the reason. ``call`` is the
        staged computation (``quantities.Staged.compute``): what is timed and measured afterwards.
        """
        module = self.modules.get(name)
        if isinstance(module, Exception):
            return {"error": f"engine unavailable: {module}"}
        try:
            staged = quantities.prepare(quantity, name, module, net, X, Y, v, self._torch_device())
        except quantities.MissingFunctionError as exc:
            return {"error": str(exc)}
        except (ArgumentError, peers.PeerUnavailableError) as exc:  # a declared refusal (UnsupportedError is one)
            return {"unsupported": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a failing point is recorded and the sweep goes on
            return {"error": _describe(exc)}
        start = time.perf_counter()
        try:
            value = staged.compute()
        except ArgumentError as exc:
            return {"unsupported": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001
            return {"error": _describe(exc), "first": time.perf_counter() - start}
        first = time.perf_counter() - start
        covered = staged.covered
        try:
            if stride == 0:  # a re-measure: the output was validated the first time
                output = None
            elif stride == 1:
                output = staged.fetch(value)
            elif len(getattr(value, "shape", ())) == 2:  # one array on the engine's device: copy only the rows compared
                output = staged.fetch(value[::stride])
            else:  # parts (a reference's per-layer arrays, a peer's blocks) that fetch assembles: stride the assembly
                output = staged.fetch(value)[::stride]
        except Exception as exc:  # noqa: BLE001 - a result that cannot be read is the engine's failure
            return {"error": _describe(exc), "first": first}
        if stride > 1 and covered is not None:
            covered = covered[::stride]
        del value
        return {"call": staged.compute, "output": output, "covered": covered, "first": first}

    def _validate(self, name, call, run, runs, stride=1):
        """``(fields, problem)``: check ``run``'s output against another engine of the suite that computed it (in
        ``REFERENCE_ORDER``; torch, the first, is itself checked against jax or manual), else a peer that did (on
        the entries it covers), else a value derived from another quantity of a reference engine; a point none of
        them checks gets ``validated_against`` None (measured, not validated)."""
        quantity = call.quantity.name
        covered = run["covered"]
        others = [n for n in REFERENCE_ORDER if n != name and "output" in runs.get(n, {})]
        peers_with_output = [n for n in peers.PEERS if n != name and "output" in runs.get(n, {})]
        if others:
            ref_name, expected = others[0], runs[others[0]]["output"]
        elif peers_with_output and name not in peers.PEERS:
            ref_name = peers_with_output[0]
            expected, covered = runs[ref_name]["output"], runs[ref_name]["covered"]
        else:
            ref_name, expected = self._derived(name, call) if stride == 1 else (None, None)
        fields = dict(first_call_s=run["first"])
        if ref_name is None:
            return dict(fields, validated_against=None, max_relative_error=None, tolerance=None), None
        ok, error, rtol = quantities.check(run["output"], covered, expected, quantity, self.dtype)
        fields.update(validated_against=ref_name, max_relative_error=error, tolerance=rtol)
        if not ok:
            return fields, f"disagreement: relative error {error:.3g} against {ref_name} exceeds tolerance {rtol:.1g}"
        return fields, None

    def _derived(self, name, call):
        """``(what, value)``: the value of ``call`` derived (``contract.derive``) from a quantity that a reference
        engine other than ``name`` computes (``name`` itself too for an oracle outside the contract, checked against
        its own engine's exact value), while that source is at most ``DERIVE_BYTES``; ``(None, None)`` when none
        can."""
        sources = [n for n in REFERENCE_ORDER if n != name or not call.quantity.in_contract]
        used = []

        def value_of(source_call):
            cells = quantities.output_cells(source_call.shape)
            if cells * 8 > DERIVE_BYTES:
                return None
            for engine in sources:
                module = self.modules.get(engine)
                function = None if module is None or isinstance(module, Exception) else source_call.function(module)
                if function is None:
                    continue
                try:
                    value = function(source_call.net, *source_call.arguments)
                except Exception:  # noqa: BLE001 - an engine that cannot give the source checks nothing
                    continue
                used.append(f"{engine}'s {source_call.quantity.name}")
                if isinstance(value, (tuple, list)):
                    return tuple(np.asarray(part, dtype=np.float64) for part in value)
                return np.asarray(value, dtype=np.float64)
            return None

        try:
            value = contract.derive(call, value_of)
        except Exception:  # noqa: BLE001 - a derivation that fails leaves the point unvalidated
            value = None
        return (used[-1], quantities.flat(value)) if value is not None and used else (None, None)

    def _release(self):
        """On a GPU, hand the blocks cached by torch's and cupy's allocators back before the next engine runs: in the
        first GPU run jax ran out of memory for the width-192 block after manual (cupy) and torch.func.hessian had
        peaked at 11 and 44 GB there, memory their allocators keep cached once freed."""
        if self.device == "cuda":
            memory.release_device_memory()

    def _torch_device(self):
        return "cuda" if self.device == "cuda" else "cpu"

    def _peak(self, call, name):
        """``(bytes, method, result)``: ``manual`` on a GPU library by that library's own counters, on the CPU by
        the resident set (whatever the run's device); the others by the run's device."""
        if name == "manual":
            from manual import arrays

            lib = arrays.library()
            return lib.peak_growth(call) if lib.on_gpu else memory.peak_growth(call, name, "cpu")
        return memory.peak_growth(call, name, self.device)

    def _measure(self, base, name, run, checked, sweep_name):
        call, first = run["call"], run["first"]
        max_call = self.settings["max_call_s"]
        began = time.perf_counter()
        try:
            stats = timing.time_call(
                call,
                repeats=self.settings["repeats"],
                min_repeat_s=self.settings["min_repeat_s"],
                first=first,
                jitted=name == "jax",
            )
            peak, method, _ = self._peak(call, name)
        except Exception as exc:  # noqa: BLE001 - a failing point is recorded and the sweep goes on
            return self._record(base, name, "failed", _describe(exc), **checked)
        if stats["median"] > max_call:  # not the first call: it holds one-time set-up and compilation
            self.too_slow[(sweep_name, base["quantity"], name)] = (
                f"skipped: a smaller point took {stats['median']:.1f} s per call, over this run's "
                f"{max_call:.0f} s (--max-call-seconds)"
            )
        compile_s = max(0.0, first - stats["median"]) if name == "jax" else None
        return self._record(
            base,
            name,
            "ok",
            time_median_s=stats["median"],
            time_min_s=stats["min"],
            time_max_s=stats["max"],
            time_per_sample_s=stats["median"] / base["batch"],
            compile_s=compile_s,
            repeats=stats["repeats"],
            number=stats["number"],
            peak_bytes=peak,
            memory_method=method,
            **checked,
            wall_s=first + time.perf_counter() - began,
        )

    # ---- one point again ------------------------------------------------------------------------
    def remeasure(self, point, trend_s, off_by):
        """Time ``point`` (a measured point) once more, as the sweep did (warm-up call, then the repeats), and record
        the new time in a copy that keeps the first in ``remeasured``; its peak memory is the first measurement's.
        ``trend_s``: the time per sample its neighbours' trend gives, ``off_by``: how far off the first time was."""
        name, quantity, batch = point["engine"], point["quantity"], point["batch"]
        net = plan.network_of(point["sweep"], point["sizes"], self.dtype)
        X, Y, v = quantities.data(net, batch)
        first = {
            "time_per_sample_s": point["time_per_sample_s"],
            "time_median_s": point["time_median_s"],
            "trend_per_sample_s": trend_s,
            "off_by": off_by,
        }
        self._release()
        began = time.perf_counter()
        run = self._first_call(name, quantity, net, X, Y, v, stride=0)
        fields = {}
        if "error" in run:
            first["failed"] = run["error"]
        else:
            try:
                stats = timing.time_call(
                    run["call"],
                    repeats=self.settings["repeats"],
                    min_repeat_s=self.settings["min_repeat_s"],
                    first=run["first"],
                    jitted=name == "jax",
                )
            except Exception as exc:  # noqa: BLE001 - the first measurement stays
                first["failed"] = _describe(exc)
            else:
                fields = dict(
                    time_median_s=stats["median"],
                    time_min_s=stats["min"],
                    time_max_s=stats["max"],
                    time_per_sample_s=stats["median"] / batch,
                    repeats=stats["repeats"],
                    number=stats["number"],
                    wall_s=time.perf_counter() - began,
                )
        new = dict(point, **fields, remeasured=first, remeasured_from_s=point["time_median_s"])
        self.points.append(new)
        self.save(self.points)
        if self.progress is not None:
            self.progress.advance(1, f"again: {point['sweep']} {quantity} {name} |W|={point['n_params']}")
        return new


def remeasure_outliers(points, runner, max_slope, factor=fit.OUTLIER_FACTOR):
    """Measure again, once each, the points whose time per sample is more than ``factor`` off their series' trend
    (``fit.outliers``; ``max_slope(quantity, sweep)``: the steepest growth allowed at a series' largest size), the
    furthest off first, each time judging the others against the times as they then are. Returns ``points`` with
    each re-measured point replaced by its new record (see ``Runner.remeasure``)."""
    points = results.unique_points(points)
    while True:
        worst = None
        for (_engine, quantity, sweep_name), group in _series(points).items():
            sizes = [p["n_params"] for p in group]
            values = [p["time_per_sample_s"] for p in group]
            for index, trend, off in fit.outliers(sizes, values, max_slope(quantity, sweep_name), factor):
                if "remeasured" not in group[index] and (worst is None or off > worst[2]):
                    worst = (group[index], trend, off)
        if worst is None:
            return points
        if runner.progress is not None:
            runner.progress.add(1)
        new = runner.remeasure(*worst)
        points = [new if p["key"] == new["key"] else p for p in points]


def _series(points):
    """``{(engine, quantity, sweep): [measured points]}``."""
    out = {}
    for point in points:
        if point.get("status") == "ok" and point.get("time_per_sample_s"):
            out.setdefault((point["engine"], point["quantity"], point["sweep"]), []).append(point)
    return out


def _describe(exc):
    """A failure reason: refused by the memory guard, out of memory, or the engine's exception and the line that raised
    it."""
    from xval.errors import MemoryGuardError

    if isinstance(exc, MemoryGuardError):  # a MemoryError too: checked first, it is a refusal before allocating
        return f"refused by the memory guard ({type(exc).__name__}): {exc}"
    if memory.out_of_memory(exc):  # the memory it held goes back at the next engine's _release
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return f"out of memory: {type(exc).__name__}: {first_line}"
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"engine error: {type(exc).__name__}: {exc}{at}"


def run(plan_items, runner, progress=None):
    """Run every planned group; ``progress`` (optional, a ``progress.Progress``) is told where each begins and ends."""
    for index, (sweep, value, quantity, names) in enumerate(plan_items):
        if progress is not None:
            progress.begin(index)
        runner.run_group(sweep, value, quantity, names)
        if progress is not None:
            progress.end(index)
    return runner.points


def summary_counts(points):
    counts = {}
    for point in points:
        counts[point["status"]] = counts.get(point["status"], 0) + 1
    return counts


def failure_lines(points, status="failed"):
    """One line per (engine, reason) of the points with ``status``, naming the quantities and the sizes it hit."""
    groups = {}
    for point in points:
        if point["status"] == status:
            found = groups.setdefault((point["engine"], point["reason"]), ({}, set()))
            found[0][point["quantity"]] = True
            found[1].add(point["n_params"])
    return [
        f"  {status}: {', '.join(names)} / {engine} at |W| = {', '.join(str(s) for s in sorted(sizes))}: {reason}"
        for (engine, reason), (names, sizes) in groups.items()
    ]


def unvalidated_lines(points):
    """One line per (quantity, engine) of the points measured without a check of their value (no other engine, peer
    or derivation computed it at that size)."""
    groups = {}
    for point in points:
        if point["status"] == "ok" and point.get("validated_against", "") is None:
            groups.setdefault((point["quantity"], point["engine"]), []).append(point["n_params"])
    return [
        f"  not validated (no other engine, peer or derivation gives it there): {quantity} / {engine} at "
        f"{len(sizes)} size{'s' * (len(sizes) > 1)}, |W| = {min(sizes)} to {max(sizes)}"
        for (quantity, engine), sizes in groups.items()
    ]
