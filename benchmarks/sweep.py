"""The sweep: for every planned point, check that the engines agree, then time each and measure its peak
memory; record every point (measured, failed with its reason, or skipped with a note), saving after each."""
import time
import traceback

import manual
from xval import engines as registry

from . import memory, peers, quantities, results, timing
from .machine import engine_device

REFERENCE_ORDER = ("torch", "jax", "manual")  # the independent references first; manual is under test


def dense_budget_bytes(env=None):
    """The largest dense output a point may write: ``XVAL_MAX_BYTES`` if set, else a quarter of available RAM
    (engines such as ``torch.func.hessian`` need several times their output while computing it)."""
    import psutil

    cap = manual.config.max_bytes(env)
    budget = psutil.virtual_memory().available // 4
    return min(cap, budget) if cap else budget


def _fits(nbytes, budget):
    """Whether a dense array of ``nbytes`` fits; the manual engine's own guard decides when it has one."""
    try:
        from manual import memory as guard
    except ImportError:
        guard = None
    helper = getattr(guard, "fits", None) if guard else None
    if helper is not None:
        try:
            return bool(helper(nbytes)) and nbytes <= budget
        except TypeError:
            pass
    return nbytes <= budget


class Runner:
    """Runs planned points. ``save(points)`` is called after every point; ``done`` holds keys to skip."""

    def __init__(self, engine_names, device, dtype, threads, settings, save, done=(), progress=None):
        self.engine_names = list(engine_names)
        self.device, self.dtype, self.threads = device, dtype, threads
        self.settings = settings
        self.save = save
        self.done = set(done)
        self.progress = progress
        self.points = []
        self.too_slow = {}  # (sweep, quantity, engine) -> reason; larger sizes of it are skipped
        self.modules = {}
        for name in self.engine_names:
            if name in peers.PEERS:
                continue
            try:
                self.modules[name] = registry.load(name)
            except manual.EngineUnavailableError as exc:
                self.modules[name] = exc

    # ---- one record ---------------------------------------------------------------------------
    def _record(self, base, engine, status, reason="", **fields):
        key = results.point_key(base["sweep"], base["sizes"], base["quantity"], engine, self.device, self.dtype)
        point = dict(key=key, status=status, reason=reason, engine=engine, device=engine_device(engine, self.device),
                     dtype=self.dtype, blas_threads=self.threads, **base, **fields)
        self.points.append(point)
        self.save(self.points)
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix_str(f"{base['sweep']} {base['quantity']} {engine} |W|={base['n_params']}")
        return point

    def key(self, base, engine):
        return results.point_key(base["sweep"], base["sizes"], base["quantity"], engine, self.device, self.dtype)

    # ---- one (sweep, size, quantity) group ------------------------------------------------------
    def run_group(self, sweep, value, quantity, names):
        sizes = sweep.sizes(value)
        net = manual.Network.random(sizes, activations="tanh", loss="mse", seed=0, dtype=self.dtype)
        batch = quantities.batch_size(quantity, self.settings.get("quick", False))
        width, depth = sizes[1], len(sizes) - 1
        base = dict(sweep=sweep.name, quantity=quantity, width=width, depth=depth, sizes=sizes,
                    n_params=net.n_params, batch=batch, output_bytes=quantities.output_bytes(quantity, net, batch))
        todo = [name for name in names if self.key(base, name) not in self.done]
        if self.progress is not None:
            self.progress.update(len(names) - len(todo))
        if not todo:
            return
        budget = dense_budget_bytes()
        if quantity in ("hessian", "hessian_block", "per_sample_gradients") and not _fits(base["output_bytes"], budget):
            for name in todo:
                self._record(base, name, "skipped", f"dense output of {base['output_bytes'] / 1e9:.2f} GB would not fit "
                             f"(budget {budget / 1e9:.2f} GB: XVAL_MAX_BYTES or a quarter of available memory)")
            return
        X, Y, v = quantities.data(net, batch)
        reference = self._reference(quantity, net, X, Y, v)
        for name in todo:
            slow = self.too_slow.get((sweep.name, quantity, name))
            if slow:
                self._record(base, name, "skipped", slow)
                continue
            self._measure(base, name, quantity, net, X, Y, v, reference, sweep.name)

    def _reference(self, quantity, net, X, Y, v):
        """``(engine name, output)`` of the first reference engine that computes the quantity (or its exact
        gradient, for finite differences); ``(None, reason)`` when none can."""
        reasons = []
        for name in REFERENCE_ORDER:
            module = self.modules.get(name)
            if module is None or isinstance(module, Exception):
                continue
            try:
                if quantity == "finite_difference_gradient":
                    return name, module.gradient(net, X, Y)
                return name, quantities.prepare(quantity, name, module, net, X, Y, v, self._torch_device())()[0]
            except Exception as exc:  # noqa: BLE001 - the reason is recorded with the point
                reasons.append(f"{name}: {type(exc).__name__}: {exc}")
        return None, "; ".join(reasons) or "no reference engine selected"

    def _torch_device(self):
        return "cuda" if self.device == "cuda" else "cpu"

    def _measure(self, base, name, quantity, net, X, Y, v, reference, sweep_name):
        module = self.modules.get(name)
        if isinstance(module, Exception):
            return self._record(base, name, "failed", f"engine unavailable: {module}")
        try:
            call = quantities.prepare(quantity, name, module, net, X, Y, v, self._torch_device())
        except (quantities.MissingFunctionError, peers.PeerUnavailableError) as exc:
            return self._record(base, name, "failed", str(exc))
        sync = timing.device_sync(name, self.device)
        began = time.perf_counter()
        try:
            # Warm-up and validation: the first call (which includes jit compilation) is checked, not timed.
            start = time.perf_counter()
            output, covered = call()
            sync()
            first = time.perf_counter() - start
            ref_name, expected = reference
            if ref_name is None:
                return self._record(base, name, "failed", f"no reference to validate against ({expected})", first_call_s=first)
            ok, error, rtol = quantities.check(output, covered, expected, quantity, self.dtype)
            checked = dict(validated_against=ref_name, max_relative_error=error, tolerance=rtol, first_call_s=first)
            del output
            if not ok:
                return self._record(base, name, "failed", f"disagreement: relative error {error:.3g} against "
                                    f"{ref_name} exceeds tolerance {rtol:.1g}", **checked)
            max_call = self.settings["max_call_s"]
            if first > max_call and name != "jax":
                self.too_slow[(sweep_name, quantity, name)] = (
                    f"skipped: a smaller point's first call took {first:.1f} s, over this run's {max_call:.0f} s per call")
            stats = timing.time_call(lambda: call(), sync, repeats=self.settings["repeats"],
                                     min_repeat_s=self.settings["min_repeat_s"], first=first,
                                     jitted=name == "jax")
            peak, method, _ = memory.peak_growth(call, name, self.device)
        except MemoryError as exc:
            return self._record(base, name, "failed", f"out of memory: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a failing point is recorded and the sweep goes on
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return self._record(base, name, "failed", f"engine error: {type(exc).__name__}: {exc} "
                                f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
        if stats["median"] > max_call:
            self.too_slow[(sweep_name, quantity, name)] = (
                f"skipped: a smaller point took {stats['median']:.1f} s per call, over this run's {max_call:.0f} s")
        compile_s = max(0.0, first - stats["median"]) if name == "jax" else None
        return self._record(
            base, name, "ok",
            time_median_s=stats["median"], time_min_s=stats["min"], time_max_s=stats["max"],
            time_per_sample_s=stats["median"] / base["batch"], compile_s=compile_s,
            repeats=stats["repeats"], number=stats["number"], peak_bytes=peak, memory_method=method, **checked,
            wall_s=time.perf_counter() - began,
        )


def run(plan_items, runner):
    for sweep, value, quantity, names in plan_items:
        runner.run_group(sweep, value, quantity, names)
    return runner.points


def summary_counts(points):
    counts = {}
    for point in points:
        counts[point["status"]] = counts.get(point["status"], 0) + 1
    return counts


def failure_lines(points, status="failed"):
    """One line per (quantity, engine, reason) of the points with ``status``, with the sizes it hit."""
    groups = {}
    for point in points:
        if point["status"] == status:
            groups.setdefault((point["quantity"], point["engine"], point["reason"]), []).append(point["n_params"])
    return [f"  {status}: {quantity} / {engine} at |W| = {', '.join(str(s) for s in sorted(set(sizes)))}: {reason}"
            for (quantity, engine, reason), sizes in groups.items()]
