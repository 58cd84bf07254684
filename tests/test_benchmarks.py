"""The benchmark harness: its memory method, slope fit, results file, failure handling, CLI and GPU path.

These tests assert numbers and file contents, never timings.
"""

import csv
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import manual
from manual import _writes as writes
from benchmarks import fit, machine, memory, plan, quantities, report, results, sweep
from xval import contract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1024 * 1024


# ---- peak memory: the CPU method on allocations of known size --------------------------------------
@pytest.mark.skipif(not memory.cpu_method_available(), reason="needs Linux /proc/self/clear_refs")
@pytest.mark.parametrize("megabytes", [64, 256])
def test_cpu_peak_growth_of_a_kept_allocation_is_its_size(megabytes):
    size = megabytes * MB
    peak, array = memory.cpu_peak_growth(lambda: np.ones(size // 8))
    assert array.nbytes == size
    assert abs(peak - size) <= 0.10 * size, f"measured {peak / MB:.1f} MiB for a {megabytes} MiB array"


@pytest.mark.skipif(not memory.cpu_method_available(), reason="needs Linux /proc/self/clear_refs")
def test_cpu_peak_growth_sees_a_temporary_freed_before_returning():
    size = 128 * MB
    memory.cpu_peak_growth(lambda: float(np.ones(size // 8).sum()))  # the same call once, as the sweep's warm-up
    peak, total = memory.cpu_peak_growth(lambda: float(np.ones(size // 8).sum()))
    assert total == size // 8
    assert abs(peak - size) <= 0.10 * size, f"measured {peak / MB:.1f} MiB for a {size / MB:.0f} MiB temporary"


def _minor_faults():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not memory.cpu_method_available(), reason="needs Linux /proc/self/clear_refs")
def test_cpu_peak_growth_measures_mid_sized_blocks_one_at_a_time():
    def call():  # a 4 MiB temporary freed before an 8 MiB one is made: the peak is the larger alone
        first = np.ones(4 * MB // 8)
        del first
        return np.ones(8 * MB // 8)

    memory.cpu_peak_growth(call)  # as in the sweep, a measurement before this one
    peak, _ = memory.cpu_peak_growth(call)
    assert abs(peak - 8 * MB) <= 0.15 * 8 * MB, f"measured {peak / MB:.1f} MiB for an 8 MiB array after a 4 MiB one"


def _fresh_2mib_faults():
    np.ones(2 * MB // 8)
    before = _minor_faults()
    for _ in range(20):
        np.ones(2 * MB // 8).sum()
    return _minor_faults() - before


@pytest.mark.skipif(not memory.cpu_method_available(), reason="needs Linux /proc/self/clear_refs")
def test_the_ratio_rows_are_timed_with_the_allocator_settled_after_the_sweeps_measurements(monkeypatch):
    # At the measuring thresholds each fresh 2 MiB array below is mapped anew and faulted in page by page (512 faults
    # each): the main job's ratio rows, timed after the sweep, paid that and python -m benchmarks.ratios did not.
    from benchmarks import __main__ as main_job
    from benchmarks import ratios

    memory.cpu_peak_growth(lambda: np.ones(2 * MB // 8))
    assert _fresh_2mib_faults() >= 20 * 512 // 2  # the sweep's state: what this test guards against is there
    seen = []

    def run(**kwargs):
        seen.append(_fresh_2mib_faults())
        raise RuntimeError("counted")  # the phase reports a failed measurement and returns

    monkeypatch.setattr(ratios, "run", run)
    main_job.ratio_phase(main_job.parse_args([]), threads=1)
    assert seen and seen[0] < 20 * 512 // 4, f"{seen[0]} page faults for 20 fresh 2 MiB arrays in the ratio phase"
    memory.cpu_peak_growth(lambda: np.ones(2 * MB // 8))  # a later measurement sets the measuring thresholds again
    assert _fresh_2mib_faults() >= 20 * 512 // 2


# ---- slope fit on synthetic data -------------------------------------------------------------------
def test_fit_recovers_an_exact_power_law():
    sizes = np.logspace(2, 5, 7)
    result = fit.fit_slope(sizes, 3e-9 * sizes**2, fraction=1.0)
    assert result["slope"] == pytest.approx(2.0, abs=1e-12)
    assert result["ci_high"] - result["ci_low"] == pytest.approx(0.0, abs=1e-9)
    assert result["points"] == 7


def test_fit_interval_covers_the_true_exponent_under_noise():
    rng = np.random.default_rng(0)
    sizes = np.logspace(2, 6, 12)
    covered = 0
    for _trial in range(200):
        values = 1e-8 * sizes**1.5 * np.exp(0.05 * rng.standard_normal(sizes.size))
        result = fit.fit_slope(sizes, values, fraction=1.0)
        assert abs(result["slope"] - 1.5) < 0.1
        covered += result["ci_low"] <= 1.5 <= result["ci_high"]
    assert 0.90 <= covered / 200 <= 0.99  # a 95% interval


def test_fit_uses_the_upper_part_of_the_sweep():
    # Overhead-dominated (flat) below 1e4, then slope 1: the upper half sees slope 1.
    sizes = np.logspace(2, 6, 9)
    values = 1e-3 + 1e-9 * sizes
    values[sizes < 1e4] = 1e-3
    values[sizes >= 1e4] = 1e-9 * sizes[sizes >= 1e4]
    result = fit.fit_slope(sizes, values, fraction=0.5)
    assert result["points"] == 5 and result["size_min"] == pytest.approx(1e4)
    assert result["slope"] == pytest.approx(1.0, abs=1e-9)


def test_fit_needs_three_points():
    assert fit.fit_slope([10, 100], [1.0, 10.0]) is None
    assert fit.t_quantile_975(1) == 12.706 and fit.t_quantile_975(10_000) == 1.96


# ---- the plan: at least two decades of |W| per quantity ----------------------------------------------
def _provides(name, quantity):
    """What the built-in engines and the peers provide here (an engine's function, a peer's staged call)."""
    from benchmarks import peers
    from xval import engines as registry

    if name in peers.PEERS:
        return peers.provides(name, quantity)
    return quantities.provides(registry.load(name), quantity)


@pytest.mark.parametrize("quantity", plan.MLP_QUANTITIES)
def test_default_width_sweep_spans_two_decades_per_quantity(quantity):
    engines = ["manual", "torch", "jax"]
    items = plan.plan(
        engines, quick=False, quantities=(quantity,), peers=("backpack", "curvlinops"), provides=_provides
    )
    measuring = {name for s, v, q, names in items for name in names}
    assert "manual" in measuring
    for engine in measuring:
        sizes = [s.n_params(v) for s, v, q, names in items if s.name == "width" and engine in names]
        decades = 1 if engine in ("backpack", "curvlinops") else 2  # the peers stop earlier (seconds per point)
        assert max(sizes) / min(sizes) >= 10**decades, f"{quantity}/{engine}: |W| from {min(sizes)} to {max(sizes)}"


@pytest.mark.parametrize("quantity", plan.CONV_QUANTITIES)
def test_the_channels_sweep_spans_a_decade_per_quantity(quantity):
    items = plan.plan(["manual"], quick=False, quantities=(quantity,))
    sizes = [s.n_params(v) for s, v, q, names in items if s.name == "channels"]
    assert max(sizes) / min(sizes) >= 10, f"{quantity}: |W| from {min(sizes)} to {max(sizes)}"


def test_an_engine_without_the_function_is_left_out_of_the_plan_and_named():
    def provides(name, quantity):
        return name == "manual" or quantity == "gradient"

    items = plan.plan(["manual", "torch"], quick=True, quantities=("gradient", "ggnvp"), provides=provides)
    assert {tuple(names) for s, v, q, names in items if q == "ggnvp"} == {("manual",)}
    assert {tuple(names) for s, v, q, names in items if q == "gradient"} == {("manual", "torch")}
    assert plan.left_out(["manual", "torch"], ("gradient", "ggnvp"), provides) == {"ggnvp": ["torch"]}


def test_sizes_follow_the_parameter_count_formula():
    width_sweep, depth_sweep, channels_sweep = plan.DEFAULT
    assert width_sweep.sizes(32) == [32] * (width_sweep.fixed + 1)
    net = manual.Network.random(depth_sweep.sizes(4), seed=0)
    assert net.n_params == 4 * (depth_sweep.fixed**2 + depth_sweep.fixed) == depth_sweep.n_params(4)
    for channels in (2, 5):
        net = channels_sweep.network(channels)
        # two 3x3 convolutions of C channels with bias, a 4 x 4 average pooling (8 x 8 -> 2 x 2), then Linear(4 C, 10)
        assert net.n_params == 2 * (9 * channels**2 + channels) + 4 * channels * 10 + 10
        assert net.n_params == channels_sweep.n_params(channels) and net.input_shape == (channels, 8, 8)
        assert plan.network_of("channels", channels_sweep.sizes(channels)).n_params == net.n_params


# ---- results file: atomic writes and --resume ------------------------------------------------------
def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    results.atomic_write(str(path), "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        results.atomic_write(str(path), "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left behind


class CountingEngine(types.SimpleNamespace):
    """A fake engine: the manual engine's functions, counting calls; ``broken`` ones raise, ``wrong`` ones are off."""

    def __init__(self, broken=(), wrong=()):
        super().__init__(calls=0)
        for name in ("forward", "gradient", "per_sample_gradients"):
            setattr(self, name, self._wrap(getattr(manual, name), name in broken, name in wrong))

    def _wrap(self, function, broken, wrong):
        def call(*args):
            self.calls += 1
            if broken:
                raise RuntimeError("engine exploded")
            out = function(*args)
            return out * 1.01 if wrong else out

        return call


def make_runner(tmp_path, engines, done=(), fake=None, quick=True):
    settings = {"quick": quick, "repeats": 5, "min_repeat_s": 0.0, "max_call_s": 10.0}
    saved = []

    def save(points):
        results.save(str(tmp_path), {"cpu_model": "test"}, settings, points)
        saved.append(len(points))

    runner = sweep.Runner(engines, "cpu", "float64", 1, settings, save, done=done)
    if fake is not None:
        runner.modules["torch"] = fake
    return runner, saved


def tiny_plan(quantities_, engines):
    sweep_ = plan.Sweep("width", 2, (3, 5))
    return [(sweep_, value, q, list(engines)) for value in sweep_.values for q in quantities_]


def test_every_point_is_saved_as_it_is_measured_and_resume_skips_it(tmp_path):
    fake = CountingEngine()
    runner, saved = make_runner(tmp_path, ["manual", "torch"], fake=fake)
    points = sweep.run(tiny_plan(["forward", "gradient"], ["manual", "torch"]), runner)
    assert [p["status"] for p in points] == ["ok"] * 8
    assert saved == [1, 2, 3, 4, 5, 6, 7, 8]  # one atomic save per point
    on_disk = results.load_points(str(tmp_path))
    assert [p["key"] for p in on_disk] == [p["key"] for p in points]
    for p in on_disk:
        assert p["time_min_s"] <= p["time_median_s"] <= p["time_max_s"] and p["repeats"] == 5
        # torch (the first reference) is itself checked against the next engine, here manual.
        assert p["validated_against"] == ("manual" if p["engine"] == "torch" else "torch")
        assert p["max_relative_error"] <= p["tolerance"]
    with open(tmp_path / results.CSV_NAME) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["key"] for r in rows] == [p["key"] for p in points] and rows[0]["sizes"] == "3x3x3"

    calls_before = fake.calls
    rerun, saved_again = make_runner(tmp_path, ["manual", "torch"], done=[p["key"] for p in on_disk], fake=fake)
    assert sweep.run(tiny_plan(["forward", "gradient"], ["manual", "torch"]), rerun) == []
    assert fake.calls == calls_before and saved_again == []


def test_a_failing_engine_is_recorded_and_the_sweep_goes_on(tmp_path):
    fake = CountingEngine(broken=("gradient",), wrong=("forward",))
    runner, _ = make_runner(tmp_path, ["manual", "torch"], fake=fake)
    points = sweep.run(tiny_plan(["forward", "gradient", "per_sample_gradients"], ["manual", "torch"]), runner)
    status = {(p["quantity"], p["engine"], p["width"]): (p["status"], p["reason"]) for p in points}
    assert len(points) == 12
    for width in (3, 5):
        # torch is the reference: when its forward is off by 1%, manual is the one that disagrees with it.
        assert status["forward", "manual", width][0] == "failed"
        assert "disagreement: relative error 0.0099" in status["forward", "manual", width][1]
        # torch's gradient raises: recorded with the exception and where it was raised.
        assert status["gradient", "torch", width][0] == "failed"
        assert status["gradient", "torch", width][1].startswith(
            "engine error: RuntimeError: engine exploded (test_benchmarks.py:"
        )
        assert status["gradient", "manual", width][0] == "ok"
        assert status["per_sample_gradients", "manual", width][0] == "ok"
        assert status["per_sample_gradients", "torch", width][0] == "ok"


def test_missing_hessian_function_is_a_recorded_failure(tmp_path):
    fake = CountingEngine()  # has no hvp
    runner, _ = make_runner(tmp_path, ["torch"], fake=fake)
    (point, *_) = sweep.run(tiny_plan(["hvp"], ["torch"])[:1], runner)
    assert point["status"] == "failed" and "has no function 'hvp'" in point["reason"]


def test_a_dense_output_that_would_not_fit_is_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "dense_budget_bytes", lambda: 1000)
    runner, _ = make_runner(tmp_path, ["manual"])
    points = sweep.run(tiny_plan(["per_sample_gradients", "gradient"], ["manual"]), runner)
    by = {(p["quantity"], p["width"]): p for p in points}
    # 4 samples x 24 parameters (768 bytes) fit the run's budget; 4 x 60 = 1920 bytes do not: skipped, not attempted.
    assert by["per_sample_gradients", 3]["status"] == "ok"
    assert by["per_sample_gradients", 5]["status"] == "skipped"
    assert by["per_sample_gradients", 5]["reason"].startswith("dense output of 0.00 GB would not fit")
    assert by["per_sample_gradients", 5]["output_bytes"] == 1920
    # the sweep went on (every call is guarded: at 1000 bytes the gradient's own working memory does not fit either)
    assert by["gradient", 5]["status"] in ("ok", "failed")


def test_a_refusal_of_the_memory_guard_is_a_recorded_failure_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XVAL_MAX_BYTES", "1000")
    runner, _ = make_runner(tmp_path, ["manual"])
    (point, *_) = sweep.run(tiny_plan(["per_sample_gradients"], ["manual"]), runner)
    assert point["status"] == "failed" and point["reason"].startswith("refused by the memory guard (MemoryGuardError)")
    assert "XVAL_MAX_BYTES" in point["reason"]


def test_a_series_over_the_per_call_budget_skips_its_larger_sizes(tmp_path):
    runner, _ = make_runner(tmp_path, ["manual"])
    runner.settings["max_call_s"] = 1e-12  # every call is over it
    points = sweep.run(tiny_plan(["gradient"], ["manual"]), runner)
    assert [(p["width"], p["status"]) for p in points] == [(3, "ok"), (5, "skipped")]
    assert (
        points[1]["reason"].startswith("skipped: a smaller point took") and "--max-call-seconds" in points[1]["reason"]
    )


# ---- the printed table and ratios --------------------------------------------------------------------
def test_slope_table_and_ratios_from_points():
    sizes = (100, 1000, 10000, 100000, 1000000, 10000000)
    points = [
        {
            "status": "ok",
            "engine": e,
            "quantity": q,
            "sweep": "width",
            "n_params": n,
            "time_per_sample_s": c * n**k,
            "time_median_s": c * n**k,
        }
        for e, c in (("manual", 1e-9), ("jax", 2e-9))
        for q, k in (("gradient", 1), ("hvp", 1), ("hessian", 2))
        for n in sizes
    ]
    table = report.slope_table(points)
    # Exact power laws: the fit starts at the second size (the first taking 2x the smallest time), 5 points.
    assert (
        "gradient                    manual      width      1.00         1  [1.00, 1.00]    1000-10000000      5"
        in table
    )
    assert (
        "hessian                     jax         width      2.00         2  [2.00, 2.00]    1000-10000000      5"
        in table
    )
    assert "off their expectation" not in table
    ratios = dict((label, ratio) for label, _, ratio in report.sweep_ratios(points))
    assert ratios["hessian: manual time / jax time"] == pytest.approx(0.5)
    assert ratios["hvp time / gradient time (manual)"] == pytest.approx(1.0)
    assert report.format_rows([{"a": 1.23456, "b": "x"}]).splitlines() == ["  a      b", "  1.235  x"]


def test_slope_table_fits_where_the_work_dominates_and_explains_a_low_slope():
    # 50 us of fixed cost per call plus 1e-10 s per parameter: flat, then linear.
    sizes = [10**k for k in range(2, 8)]
    times = [5e-5 + 1e-10 * n for n in sizes]
    points = [
        {
            "status": "ok",
            "engine": "manual",
            "quantity": "forward",
            "sweep": "depth",
            "n_params": n,
            "time_per_sample_s": t,
            "time_median_s": t,
        }
        for n, t in zip(sizes, times)
    ]
    table = report.slope_table(points)
    row = next(line for line in table.splitlines() if line.startswith("forward"))
    # 2x the smallest time (100 us) is first reached at |W| = 1e6: 1e6 and 1e7 qualify, fewer than 3 points, so the
    # largest three are fitted, and no interval is printed for three points.
    expected = np.polyfit(np.log(sizes[-3:]), np.log(times[-3:]), 1)[0]
    assert f"{expected:6.2f}" in row and "n/a" in row and "100000-10000000" in row
    assert row.endswith("3 (1)") and expected < 0.75
    assert "(1) per-call overhead" in table and "smallest fitted calls: 60 us to 60 us" in table
    assert "issue" not in table


# ---- choosing the device, with and without a GPU (faked either way, so both branches run everywhere) ---
NO_GPU_ENV = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}  # a subprocess that sees no GPU on any machine


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cuda_without_a_gpu_says_so(how, monkeypatch):
    monkeypatch.setattr(machine, "gpu_names", lambda: [])
    with pytest.raises(machine.NoGPUError, match="no GPU found"):
        if how == "flag":
            machine.resolve_device("cuda", env={})
        else:
            machine.resolve_device(None, env={"XVAL_DEVICE": "cuda"})
    assert machine.resolve_device(None, env={}) == ("cpu", "no GPU found (XVAL_DEVICE=auto): measuring on the CPU")


def test_a_gpu_is_chosen_by_auto_and_cuda_and_manual_stays_on_numpy(monkeypatch):
    monkeypatch.setattr(machine, "gpu_names", lambda: ["Fake GPU 80GB"])
    assert machine.resolve_device(None, env={}) == ("cuda", "GPU found: Fake GPU 80GB")
    assert machine.resolve_device("cuda", env={}) == ("cuda", "GPU: Fake GPU 80GB")
    assert machine.resolve_device("cpu", env={}) == ("cpu", "CPU")
    assert machine.engine_device("manual", "cuda") == "cpu (numpy)"
    assert machine.engine_device("jax", "cuda") == "cuda"


def test_manual_points_of_a_gpu_run_are_measured_on_the_cpu_and_labelled_so(tmp_path):
    settings = {"quick": True, "repeats": 5, "min_repeat_s": 0.0, "max_call_s": 10.0}
    runner = sweep.Runner(["manual"], "cuda", "float64", 1, settings, lambda points: None)
    points = sweep.run(tiny_plan(["gradient"], ["manual"]), runner)
    assert [p["status"] for p in points] == ["ok", "ok"]
    assert all(p["device"] == "cpu (numpy)" and p["memory_method"].startswith("rss-growth") for p in points)
    assert all(p["key"].endswith("|manual|cuda|float64") for p in points)  # the run's device keys it for --resume


def test_cli_with_device_cuda_and_no_gpu_exits_with_the_reason(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--device", "cuda", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, **NO_GPU_ENV),
    )
    assert done.returncode == 2
    assert "error: no GPU found: --device cuda / XVAL_DEVICE=cuda was requested" in done.stderr
    assert os.listdir(tmp_path) == []


# ---- the CI smoke run: python -m benchmarks --quick -------------------------------------------------
def test_quick_run_writes_json_csv_and_plots(tmp_path):
    out = tmp_path / "bench"
    env = dict(os.environ, XVAL_BACKEND="manual,torch,jax", XVAL_DEVICE="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-peers", "--no-ratios", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fitted slope of log(time per sample) vs log(|W|)" in done.stdout
    document = json.loads((out / results.JSON_NAME).read_text())
    info = document["machine"]
    assert info["cpu_cores_logical"] == os.cpu_count() and info["cpu_model"]
    assert info["device"] == "cpu" and info["gpu_names"] == machine.gpu_names() and info["blas_threads_pinned"] >= 1
    assert {"numpy", "torch", "jax"} <= set(info["libraries"])
    assert any(pool.get("user_api") == "blas" for pool in info["blas_pools"])
    points = document["points"]
    assert {p["sweep"] for p in points} == {"width", "depth", "channels"}
    assert {p["engine"] for p in points} == {"manual", "torch", "jax"}
    assert set(plan.QUANTITIES) <= {p["quantity"] for p in points}
    ok = [p for p in points if p["status"] == "ok"]
    unvalidated = set()
    for p in ok:
        if p["sweep"] != "channels":
            assert p["n_params"] == p["depth"] * (p["width"] ** 2 + p["width"])
        assert p["time_min_s"] <= p["time_median_s"] <= p["time_max_s"] and p["repeats"] >= 5
        assert p["time_per_sample_s"] == pytest.approx(p["time_median_s"] / p["batch"])
        if p["validated_against"] is None:  # measured, and said to be unchecked: never a pass
            assert p["max_relative_error"] is None and p["tolerance"] is None
            unvalidated.add((p["quantity"], p["engine"]))
        else:
            assert p["max_relative_error"] <= p["tolerance"]
            assert p["validated_against"] in ("torch", "jax", "manual") or "'s " in p["validated_against"]
        assert p["peak_bytes"] >= 0 and p["memory_method"].startswith("rss-growth")
        assert (p["compile_s"] is not None) == (p["engine"] == "jax")
    for quantity, engine in unvalidated:
        line = f"not validated (no other engine, peer or derivation gives it there): {quantity} / {engine}"
        assert line in done.stdout
    measured = {(p["quantity"], p["engine"]) for p in ok}
    for quantity in ("forward", "gradient", "per_sample_gradients"):
        assert {(quantity, e) for e in ("manual", "torch", "jax")} <= measured
    # the oracle is checked against a reference's exact gradient, a diagonal against a reference's Hessian
    fd = [p for p in ok if p["quantity"] == "finite_difference_gradient"]
    assert fd and all(p["validated_against"] == "torch's gradient" for p in fd)
    assert {p["quantity"] for p in ok if p["sweep"] == "channels"} == set(plan.CONV_QUANTITIES)
    assert all(p["reason"] for p in points if p["status"] != "ok")
    for p in points:
        if p["status"] == "skipped" and p["sweep"] == "channels" and p["engine"] != "manual":
            assert p["reason"].startswith("unsupported: ")  # an engine that refuses the network says why
    batched = [p for p in ok if contract.quantity(p["quantity"]).batch]
    itemsize = {"float64": 8, "float32": 4}[document["settings"]["dtype"]]
    psg = [p for p in batched if p["quantity"] == "per_sample_gradients"]
    assert all(p["batch"] == 4 for p in batched) and all(p["batch"] == 1 for p in ok if p not in batched)
    assert psg and all(p["output_bytes"] == 4 * p["n_params"] * itemsize for p in psg)
    bounded = [p for p in ok if p["quantity"] in plan.MEMORY_BOUNDED]
    assert bounded and all(
        p["memory_bound_bytes"]
        == p["n_params"] * p["batch"] * (10 if p["sweep"] == "channels" else p["width"]) * itemsize
        for p in bounded
    )
    assert "peak memory against P N n_L entries" in done.stdout
    with open(out / results.CSV_NAME) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(points) and set(results.CSV_FIELDS) == set(rows[0])
    for name in ("time_per_sample.png", "peak_memory.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # output.txt keeps exactly what the run printed (the progress bar and phase lines go to stderr).
    assert (out / results.REPORT_NAME).read_text() == done.stdout
    assert "benchmarks: 100%" in done.stderr and "plots: writing" in done.stderr
    assert done.stdout.count("threads: ") == 1 and "issue" not in done.stdout
    assert "speed-ratio rows (python -m benchmarks.ratios):\n  skipped (--no-ratios)" in done.stdout
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]
    assert math.isfinite(document["settings"]["elapsed_s"])


# ---- the ratio rows: each peer checked against manual, then timed; pass/fail from the bound -----------------
def test_ratio_rows_measure_each_peer_and_judge_it_by_its_bound():
    from benchmarks import ratios

    pytest.importorskip("jax")
    row = ratios.Row("gradient", (3, 4, 2), 1, {"jax": 1e9, "write floor": 1e-9}, 1, jax="jax.jit(jax.grad)")
    results_, settings = ratios.run(quick=True, threads=1, rows=[row], progress=False)
    assert [(r.peer, r.passed) for r in results_] == [("jax.jit(jax.grad)", True), ("numpy writing the output", False)]
    for r in results_:
        # the median of 5 interleaved pairs' ratios, inside its printed spread (the quartiles)
        assert r.pairs == 5 and r.ratio_q1 <= r.ratio <= r.ratio_q3 and r.manual_min_s <= r.manual_s and not r.note
    assert settings["threads"] == 1 and "torch=1" in settings["pools"] and "manual writes=1" in settings["pools"]
    table = ratios.format_table(results_, settings)
    assert "gradient, [3, 4, 2], N=1 (P=26)" in table and table.count("pass") == 1 and table.count("FAIL") == 1
    assert "<= 1e-09" not in table and "issue" not in table
    assert ratios.as_records(results_)[1]["target"] == "<= 0.00 (1000000000x faster)"


def test_on_two_threads_each_write_floor_is_also_timed_split_and_judged_by_no_target(monkeypatch):
    from benchmarks import ratios

    monkeypatch.setattr(writes, "PARALLEL_BYTES", 0)  # split even this small floor
    floor = ratios.write_floor((6, 2, 5), threads=2)()
    rng = np.random.default_rng(0)
    assert np.array_equal(floor, np.multiply.outer(rng.standard_normal(6), rng.standard_normal(10)))
    row = ratios.Row("per_sample_gradients", (3, 4, 2), 6, {"write floor": 1e9}, 1)
    results_, settings = ratios.run(quick=True, threads=2, rows=[row], progress=False)
    assert [(r.peer, r.bound, r.passed) for r in results_] == [
        ("numpy writing the output", 1e9, True),
        ("the same on 2 threads", None, None),
    ]
    assert results_[1].pairs == 5 and results_[1].ratio_q1 <= results_[1].ratio <= results_[1].ratio_q3
    table = ratios.format_table(results_, settings)
    assert "none (for reference) -" in table and "rows split over 2 threads (no target)" in table
    assert ratios.verdict_line(results_) == "all 1 ratio rows meet their target"
    assert [r.peer for r in ratios.run(quick=True, threads=1, rows=[row], progress=False)[0]] == [
        "numpy writing the output"
    ]


def test_a_ratio_row_whose_peer_disagrees_fails_with_the_reason(monkeypatch):
    from benchmarks import ratios

    real = ratios._staged

    def off_by_one_percent(engine, call):
        compute, fetch = real(engine, call)
        return (compute, (lambda value: fetch(value) * 1.01) if engine == "jax" else fetch)

    pytest.importorskip("jax")
    monkeypatch.setattr(ratios, "_staged", off_by_one_percent)
    row = ratios.Row("forward", (3, 2), 1, {"jax": 2.0}, 1, jax="jax.jit(forward)")
    (result,) = ratios.run(quick=True, threads=1, rows=[row], progress=False)[0]
    assert not result.passed and result.ratio is None
    assert result.note.startswith(
        "not measured: AssertionError: jax.jit(forward) disagrees with manual before timing: "
        "relative error 0.0099 > 1e-10"
    )


def test_memory_points_at_the_floor_and_dips_are_kept_off_the_line():
    from benchmarks import plots

    line, floor, dips = plots._split_memory([10, 20, 40, 80, 160], [0, 4096, 1e6, 3e5, 2e6])
    assert floor == [(10, 4096), (20, 4096)]  # 0 and one page: drawn on the 4 KiB floor
    assert dips == [(80, 3e5)]  # under half of the previous size's 1e6: reused memory
    assert line == [(40, 1e6), (160, 2e6)]


def test_ratio_rows_use_an_engines_staged_call_when_it_has_one(monkeypatch, capsys):
    from benchmarks import ratios

    staged = []

    def stage_gradient(net, X, Y):
        staged.append(net.n_params)
        return lambda: manual.gradient(net, X, Y)

    stage_gradient.__dict__.update(manual.stage_gradient.__dict__)  # the memory model the guard reads stays manual's
    monkeypatch.setattr(manual, "stage_gradient", stage_gradient, raising=False)
    row = ratios.Row("gradient", (3, 4, 2), 1, {"write floor": 1e9}, 1)
    (result,) = ratios.run(quick=True, threads=1, rows=[row], progress=True)[0]
    assert staged == [26] and result.passed and result.manual_s > 0
    progress = capsys.readouterr().err
    assert "ratio rows" in progress and "left" in progress and "gradient, [3, 4, 2]" in progress
