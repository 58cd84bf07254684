"""What a GPU run adds, tested on the CPU: the GPU sweep plan, the GPU rows read from a run's points, out-of-memory
failures recorded as such, cached device memory handed back between engines, and large outputs validated on a
strided subset of rows that is the same for every engine.

No test here needs a GPU: the GPU rows are computed from points, and the sweep's GPU-only steps are called with
stand-ins for the GPU libraries.
"""

import sys
import types

import pytest

from benchmarks import gpu_rows, memory, peers, plan, plots, sweep
from xval.errors import MemoryGuardError

from tests.test_benchmarks import CountingEngine, make_runner


# ---- the plan -----------------------------------------------------------------------------------
def _sizes(items, quantity, engine, sweep_name="width"):
    return [
        value for sweep_, value, q, names in items if sweep_.name == sweep_name and q == quantity and engine in names
    ]


def test_a_gpu_run_reaches_every_gpu_row_and_the_cpu_plan_is_unchanged():
    engines = ["manual", "torch", "jax"]
    gpu = plan.plan(engines, peers=("backpack", "curvlinops"), device="cuda")
    cpu = plan.plan(engines, peers=("backpack", "curvlinops"), device="cpu")
    for row in gpu_rows.ROWS:
        for engine in engines:
            assert row.width in _sizes(gpu, row.quantity, engine), (row.name, engine)
    assert max(_sizes(cpu, "hessian_block", "manual")) == 64 and 192 not in _sizes(cpu, "gradient", "manual")
    assert max(_sizes(gpu, "hessian_block", "backpack")) == 128  # BackPACK needs a block-sized identity besides
    assert plan.sweeps(quick=True, device="cuda") is plan.QUICK


# ---- the GPU rows from points -------------------------------------------------------------------
def _point(engine, quantity, width, status="ok", seconds=None, peak=None, reason="", output_bytes=None):
    n_params = 3 * (width * width + width)
    block = (width * width + width) ** 2 * 8
    return dict(
        engine=engine,
        quantity=quantity,
        width=width,
        depth=3,
        sweep="width",
        status=status,
        reason=reason,
        n_params=n_params,
        output_bytes=output_bytes or (block if quantity == "hessian_block" else n_params * 8),
        time_median_s=seconds,
        peak_bytes=peak,
    )


def test_gpu_rows_compare_manual_with_jax_and_its_peak_with_the_block():
    block = (128 * 129) ** 2 * 8
    points = [
        _point("manual", "hessian_block", 128, seconds=2e-3, peak=int(1.02 * block)),
        dict(
            _point("jax", "hessian_block", 128, seconds=1e-3, peak=block),
            memory_method="jax compiled memory_analysis (temp + output; the peak counter was not raised)",
        ),
        _point("torch", "hessian_block", 128, seconds=1e-2, peak=4 * block),
        _point("manual", "hessian_block", 192, seconds=5e-3, peak=int(1.2 * (192 * 193) ** 2 * 8)),
        _point(
            "jax",
            "hessian_block",
            192,
            status="failed",
            reason=sweep._describe(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")),
        ),
        _point(
            "torch",
            "hessian_block",
            192,
            status="failed",
            reason=sweep._describe(MemoryGuardError("hessian_block needs 45 GB")),
        ),
        _point("manual", "gradient", 1024, seconds=3e-4, peak=25e6),
        _point("jax", "gradient", 1024, seconds=2e-4, peak=25e6),
        _point("manual", "gradient", 512, seconds=1.0),  # another width: not this row's
    ]
    rows = {r["row"]: r for r in gpu_rows.records(points, "cuda")}
    first = rows["same-layer block, width 128"]
    assert first["time_ratio"] == pytest.approx(2.0) and first["time_met"] is False
    assert first["peak_ratio"] == pytest.approx(1.02, rel=1e-6) and first["peak_met"] is True
    second = rows["same-layer block, width 192"]
    assert second["engines"]["jax"]["state"] == "out of memory"
    assert second["engines"]["torch"]["state"] == "refused (memory guard)"
    assert second["time_ratio"] is None and second["time_met"] is None  # no jax time to compare with
    assert second["peak_met"] is False
    gradient = rows["gradient, width 1024"]
    assert gradient["time_ratio"] == pytest.approx(1.5) and gradient["time_met"] is True  # the target is <= 1.5
    assert gradient["peak_ratio"] is None  # no peak target for the gradient
    assert rows["hvp, width 1024"]["engines"]["manual"]["state"] == "not measured"
    assert gpu_rows.records(points, "cpu") == []

    table = gpu_rows.format_table(list(rows.values()))
    assert "2 (<= 1: FAIL)" in table and "1.02 (<= 1.05: pass)" in table
    assert "jax out of memory" in table and "refused (memory guard)" in table
    assert "1.5 (<= 1.5: pass)" in table and "not measured" in table
    assert "1 ms, 2.18 GB (XLA plan)" in table and "10 ms, 8.72 GB |" not in table  # only jax's plan is marked


# ---- failures on a GPU ----------------------------------------------------------------------------
class OutOfMemoryError(RuntimeError):
    """Named as torch's and cupy's CUDA out-of-memory errors are."""


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError("no"),
        OutOfMemoryError("CUDA error"),
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 10.23GiB"),
    ],
)
def test_every_kind_of_out_of_memory_is_recorded_as_such(exc):
    assert memory.out_of_memory(exc)
    assert sweep._describe(exc).startswith(f"out of memory: {type(exc).__name__}: ")


def test_a_memory_guard_refusal_is_not_an_out_of_memory():
    reason = sweep._describe(MemoryGuardError("hessian needs 9 bytes"))
    assert reason == "refused by the memory guard (MemoryGuardError): hessian needs 9 bytes"
    assert not memory.out_of_memory(ValueError("shape mismatch"))
    assert sweep._describe(ValueError("shape mismatch")) == "engine error: ValueError: shape mismatch"


def test_cached_device_memory_is_handed_back_by_every_library_loaded(monkeypatch):
    calls = []
    pool = types.SimpleNamespace(free_all_blocks=lambda: calls.append("cupy pool"))
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(get_default_memory_pool=lambda: pool))
    cuda = types.SimpleNamespace(is_available=lambda: True, empty_cache=lambda: calls.append("torch cache"))
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    memory.release_device_memory()
    assert calls == ["torch cache", "cupy pool"]


@pytest.mark.parametrize("device, releases", [("cpu", 0), ("cuda", 2)])
def test_a_gpu_runner_hands_memory_back_before_each_first_call_and_each_measurement(
    device, releases, tmp_path, monkeypatch
):
    released = []
    monkeypatch.setattr(memory, "release_device_memory", lambda: released.append(True))
    runner, _ = make_runner(tmp_path, ["manual"])
    runner.device = device  # manual computes with numpy on the CPU either way: only the release differs
    monkeypatch.setattr(runner, "_torch_device", lambda: "cpu")
    points = sweep.run([(plan.Sweep("width", 2, (3,)), 3, "gradient", ["manual"])], runner)
    assert [p["status"] for p in points] == ["ok"]
    assert len(released) == releases  # one before the warm-up call, one before the timed calls


# ---- strided validation of large outputs ----------------------------------------------------------
def test_the_validation_stride_compares_about_the_budget():
    assert sweep.validation_stride(100, limit=1000) == 1
    assert sweep.validation_stride(1000, limit=1000) == 1
    assert sweep.validation_stride(1001, limit=1000) == 2
    assert sweep.validation_stride((192 * 193) ** 2 * 8) == 41  # the width-192 GPU block: 11 GB, 268 MB compared


@pytest.mark.parametrize("quantity", ["hessian_block", "per_sample_gradients"])
def test_strided_validation_takes_the_same_rows_from_arrays_parts_and_peers(quantity, tmp_path, monkeypatch):
    # manual returns one array, the references per-layer parts (per-sample gradients) or one array (blocks), the
    # peers their own parts with a coverage mask: every engine must still be compared on the same rows.
    monkeypatch.setattr(sweep, "VALIDATE_BYTES", 512)
    installed = [name for name in peers.PEERS if peers.available(name) is None]  # optional: CI has none
    engines = ["manual", "torch", "jax"] + (installed if quantity == "hessian_block" else [])
    runner, _ = make_runner(tmp_path, engines)
    points = sweep.run([(plan.Sweep("width", 2, (5,)), 5, quantity, engines)], runner)
    assert [p["status"] for p in points] == ["ok"] * len(engines), [p["reason"] for p in points]
    stride = sweep.validation_stride(points[0]["output_bytes"], 512)
    assert stride > 1
    assert {p["validated_rows"] for p in points} == {
        f"rows 0, {stride}, {2 * stride}, ... (1 in {stride}; the output has {points[0]['output_bytes'] / 1e9:.3g} GB)"
    }


def test_strided_validation_still_catches_an_engine_off_in_a_compared_row(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "VALIDATE_BYTES", 512)
    fake = CountingEngine(wrong=("per_sample_gradients",))
    runner, _ = make_runner(tmp_path, ["manual", "torch"], fake=fake)
    points = sweep.run([(plan.Sweep("width", 2, (5,)), 5, "per_sample_gradients", ["manual", "torch"])], runner)
    status = {p["engine"]: (p["status"], p["reason"]) for p in points}
    assert status["manual"][0] == "failed" and "disagreement: relative error 0.0099" in status["manual"][1]
    assert sweep.validation_stride(points[0]["output_bytes"], 512) > 1  # the comparison was a strided one


def test_gpu_memory_plots_put_their_floor_at_the_allocators_block_not_at_a_page():
    gpu_bytes, gpu_label, gpu_title = plots.FLOORS["cuda"]
    assert gpu_bytes == 512 and "512" in gpu_label and "counter" in gpu_title
    line, floor, dips = plots._split_memory([10, 20, 40], [100, 1024, 8192], gpu_bytes)
    assert floor == [(10, 512)] and line == [(20, 1024), (40, 8192)] and dips == []
    # The same values on the CPU: a resident-set growth under one page is no measurement.
    line, floor, _ = plots._split_memory([10, 20, 40], [100, 1024, 8192])
    assert floor == [(10, 4096), (20, 4096)] and line == [(40, 8192)]


def test_strided_validation_cuts_a_peers_parts_and_its_coverage_mask_alike(tmp_path, monkeypatch):
    """A stand-in peer (so that CI, which has none installed, runs this path): its value is a tuple of parts that its
    fetch assembles, and it covers only the weight rows; the rows compared and the mask must be cut alike."""
    import numpy as np

    import manual

    def prepare(name, call, device="cpu"):
        net, X, Y, layer = call.net, call.argument("X"), call.argument("Y"), call.argument("l")
        block = manual.hessian_block(net, X, Y, layer, layer)
        covered = np.zeros(block.shape, dtype=bool)
        covered[: net.sizes[layer] * net.sizes[layer + 1]] = True  # the weight rows only
        shifted = np.where(covered, block, block + 1.0)  # entries it does not cover are off: they must be masked
        return (lambda: (shifted[:2], shifted[2:])), (lambda parts: np.concatenate(parts)), covered

    monkeypatch.setattr(sweep, "VALIDATE_BYTES", 512)
    monkeypatch.setattr(peers, "available", lambda name: None)
    monkeypatch.setattr(peers, "prepare", prepare)
    runner, _ = make_runner(tmp_path, ["manual", "backpack"])
    points = sweep.run([(plan.Sweep("width", 2, (5,)), 5, "hessian_block", ["manual", "backpack"])], runner)
    assert [p["status"] for p in points] == ["ok", "ok"], [p["reason"] for p in points]
    assert points[1]["validated_against"] == "manual" and points[1]["max_relative_error"] < 1e-15
    assert sweep.validation_stride(points[1]["output_bytes"], 512) > 1  # the comparison was a strided one
