"""The benchmarks read every per-quantity fact from the contract (``xval.contract.Quantity``): no quantity is keyed in
a table of their own outside the row tables and the plan; the curvature quantities are measured, checked against the
peers (BackPACK, curvlinops) and against values derived from a reference's other quantities, and judged by their
peak memory; an engine that refuses a network is skipped with its reason. Synthetic timings and small networks:
nothing here asserts a speed."""

import ast
import os

import numpy as np
import pytest

import manual
from benchmarks import peers, plan, quantities, ratios, report, sweep
from xval import Network, contract
from xval.errors import UnsupportedNetworkError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
NAMES = set(contract.QUANTITIES) | set(contract.PENDING) | {contract.FINITE_DIFFERENCE_GRADIENT.name}
# Where a quantity's name may be written: the plan's lists of what a sweep measures (and its sizes), and the rows of
# the ratio and GPU row tables, as arguments of the row records.
PLAN_MODULES = ("plan.py",)
ROW_RECORDS = {"ratios.py": {"Row", "SweepRatio", "ManualOf"}, "gpu_rows.py": {"GpuRow"}}


def quantity_literals(source, path="<source>"):
    """``[(line, name, enclosing call or None)]``: every string constant of ``source`` that is a quantity's name,
    with the name of the innermost call it is an argument of."""
    tree = ast.parse(source, path)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
            call, up = None, parents.get(node)
            while up is not None and call is None:
                if isinstance(up, ast.Call):
                    call = getattr(up.func, "id", getattr(up.func, "attr", None))
                up = parents.get(up)
            found.append((node.lineno, node.value, call))
    return found


def misplaced(name, source):
    """The quantity names ``source`` (the module ``name`` of benchmarks/) writes where it may not."""
    if name in PLAN_MODULES:
        return []
    allowed = ROW_RECORDS.get(name, set())
    return [(line, value) for line, value, call in quantity_literals(source, name) if call not in allowed]


def test_no_quantity_is_keyed_in_a_table_of_the_benchmarks():
    offenders = {}
    for name in sorted(os.listdir(BENCHMARKS)):
        if name.endswith(".py"):
            with open(os.path.join(BENCHMARKS, name)) as handle:
                found = misplaced(name, handle.read())
            if found:
                offenders[name] = found
    assert not offenders, (
        "quantity names written outside the plan and the row tables (read the fact from "
        f"xval.contract.quantity(name) instead): {offenders}"
    )


@pytest.mark.parametrize(
    "source, module",
    [
        ('EXPECTED = {"hvp": {"width": (1, 1)}}', "report.py"),  # a table keyed by a quantity
        ('DENSE = ("hessian", "per_sample_gradients")', "sweep.py"),  # a list of quantities with a property
        ('if quantity == "finite_difference_gradient": pass', "sweep.py"),  # a special case by name
        ('LABELS = {"hvp": "jax.jit(jvp of grad)"}', "ratios.py"),  # a table beside the rows
        ('ROWS = (GpuRow("hvp", 1024, 1.5),)\nif q == "hvp": pass', "gpu_rows.py"),
    ],
)
def test_the_scan_finds_a_planted_table_or_name(source, module):
    assert misplaced(module, source), f"the scan missed {source!r} in {module}"


def test_the_scan_lets_the_plan_and_the_rows_name_quantities():
    assert misplaced("plan.py", 'MLP_QUANTITIES = ("forward", "gradient")\nLIMITS = {"hessian": 32}') == []
    assert misplaced("ratios.py", 'ROWS = (Row("ggnvp", (4, 4), 1, {ManualOf("gradient"): 1.5}, 2),)') == []
    assert misplaced("gpu_rows.py", 'ROWS = (GpuRow("hvp", 1024, 1.5),)') == []


# ---- the facts come from the contract -------------------------------------------------------------------------------
def test_every_measured_quantity_has_its_expected_slope_in_the_contract_for_each_sweep_measuring_it():
    for sweep_ in plan.DEFAULT + plan.QUICK + plan.GPU:
        for quantity in sweep_.quantities:
            low, high = contract.quantity(quantity).slopes[sweep_.name]  # a KeyError names the missing fact
            assert report.expected_range(quantity, sweep_.name) == (low, high) and 0 <= low <= high
            assert report.expected_slope(quantity, sweep_.name) == high


def test_the_slope_table_reads_the_expectation_and_the_reason_below_it_from_the_contract(monkeypatch):
    sizes = [10**k for k in range(2, 8)]
    points = [
        {
            "status": "ok",
            "engine": "manual",
            "quantity": "ggn_diagonal",
            "sweep": "width",
            "n_params": n,
            "time_per_sample_s": 1e-9 * n,
            "time_median_s": 1e-9 * n,
            "output_bytes": 8 * n,
        }
        for n in sizes
    ]
    quantity = contract.quantity("ggn_diagonal")
    table = report.slope_table(points)
    assert "ggn_diagonal                manual      width      1.00       1.5" in table  # 1 against the contract's 1.5
    because = "a planted reason for this quantity's low slope"
    changed = contract.Quantity(**{**quantity.__dict__, "below_because": because, "slopes": {"width": (2, 2)}})
    monkeypatch.setitem(contract._ALL, "ggn_diagonal", changed)
    table = report.slope_table(points)
    assert "1.00         2" in table and f"(1) {because}" in table


def test_batch_and_dense_come_from_the_contract(monkeypatch):
    for quantity in plan.QUANTITIES:
        assert quantities.batch_size(quantity) == (16 if contract.quantity(quantity).batch else 1)
    flipped = contract.Quantity(**{**contract.quantity("gradient").__dict__, "batch": True, "dense": True})
    monkeypatch.setitem(contract._ALL, "gradient", flipped)
    assert quantities.batch_size("gradient") == 16 and quantities.batch_size("gradient", quick=True) == 4
    runner = sweep.Runner(
        ["manual"],
        "cpu",
        "float64",
        1,
        {"quick": True, "repeats": 5, "min_repeat_s": 0.0, "max_call_s": 10.0},
        lambda points: None,
    )
    monkeypatch.setattr(sweep, "dense_budget_bytes", lambda: 1)  # a dense output never fits: skipped, not attempted
    (point,) = sweep.run([(plan.Sweep("width", 1, (3,)), 3, "gradient", ["manual"])], runner)
    assert point["batch"] == 4 and point["status"] == "skipped" and point["reason"].startswith("dense output")


# ---- validation: peers, derived values, none ------------------------------------------------------------------------
def make_runner(engines, quick=True):
    settings = {"quick": quick, "repeats": 5, "min_repeat_s": 0.0, "max_call_s": 10.0}
    return sweep.Runner(engines, "cpu", "float64", 1, settings, lambda points: None)


def one_group(runner, quantity, engines, sweep_=None, value=3):
    sweep_ = sweep_ or plan.Sweep("width", 2, (value,))
    return {p["engine"]: p for p in sweep.run([(sweep_, value, quantity, engines)], runner)}


def test_a_quantity_no_engine_shares_is_checked_against_a_value_a_reference_derives():
    points = one_group(make_runner(["manual", "torch"]), "hessian_diagonal", ["manual"])
    assert points["manual"]["status"] == "ok" and points["manual"]["validated_against"] == "torch's hessian"
    assert points["manual"]["max_relative_error"] <= 1e-10
    (fd,) = one_group(make_runner(["manual", "torch"]), "finite_difference_gradient", ["manual"]).values()
    assert fd["status"] == "ok" and fd["validated_against"] == "torch's gradient"


def test_a_derived_check_still_fails_an_engine_that_is_off(monkeypatch):
    real = manual.stage_hessian_diagonal

    def off_by_one_percent(*arguments):
        call = real(*arguments)
        return lambda: call() * 1.01

    monkeypatch.setattr(manual, "stage_hessian_diagonal", off_by_one_percent)
    points = one_group(make_runner(["manual", "torch"]), "hessian_diagonal", ["manual"])
    assert points["manual"]["status"] == "failed"
    reason = points["manual"]["reason"]
    assert "disagreement: relative error 0.0099" in reason and "against torch's hessian" in reason


def test_a_point_nothing_can_check_is_measured_and_said_to_be_unchecked():
    points = one_group(make_runner(["manual"]), "ggn_diagonal", ["manual"])
    point = points["manual"]
    assert point["status"] == "ok" and point["time_median_s"] > 0
    assert point["validated_against"] is None and point["max_relative_error"] is None and point["tolerance"] is None
    (line,) = sweep.unvalidated_lines(list(points.values()))
    assert "not validated" in line and "ggn_diagonal / manual at 1 size, |W| = 24 to 24" in line


def test_an_engine_that_refuses_the_network_is_skipped_with_its_reason_at_every_larger_size(monkeypatch):
    runner = make_runner(["manual", "torch"])
    refusals = []

    def refuse(net, X, Y):
        refusals.append(net.n_params)
        raise UnsupportedNetworkError("no convolutions here")

    monkeypatch.setattr(runner.modules["torch"], "stage_gradient", refuse)
    channels = plan.Sweep("channels", 2, (2, 3), quantities=plan.CONV_QUANTITIES)
    points = sweep.run([(channels, value, "gradient", ["manual", "torch"]) for value in channels.values], runner)
    torch_points = [p for p in points if p["engine"] == "torch"]
    assert [p["status"] for p in torch_points] == ["skipped", "skipped"] and len(refusals) == 1
    assert all(p["reason"] == "unsupported: UnsupportedNetworkError: no convolutions here" for p in torch_points)
    assert all(p["status"] == "ok" for p in points if p["engine"] == "manual")
    (line,) = sweep.failure_lines(points, "skipped")
    assert line.startswith("  skipped: gradient / torch at |W| = 166, 298: unsupported:")


@pytest.mark.parametrize("quantity", ["hessian_block", "ggnvp", "ggn_diagonal", "hessian_diagonal", "kfac_factors"])
def test_the_peers_staged_calls_agree_with_manual_on_what_they_cover(quantity):
    names = [name for name in peers.PEERS if peers.provides(name, quantity) and peers.available(name) is None]
    if not names:
        pytest.skip(f"no peer for {quantity} installed ({peers.INSTALL})")
    net = manual.Network.random([3, 5, 4, 2], activations="sigmoid", loss="mse", seed=2)
    X, Y, v = quantities.data(net, batch=4, seed=3)
    call = quantities.call_of(quantity, net, 4, X, Y, v)
    ours = quantities.flat(call.evaluate(manual))
    for name in names:
        compute, fetch, covered = peers.prepare(name, call)
        theirs = fetch(compute())
        assert theirs.shape == ours.shape, name
        mask = np.ones(ours.shape, dtype=bool) if covered is None else covered
        assert mask.any() and np.allclose(theirs[mask], ours[mask], rtol=1e-10, atol=1e-14), (name, quantity)
        # what a peer does not cover is not claimed: BackPACK's KFLR has no bias row and column of A
        if name == "backpack" and quantity == "kfac_factors":
            n_in = net.sizes[1]
            assert (~mask).sum() == 2 * (n_in + 1) - 1


def test_a_peer_that_cannot_take_the_network_is_refused_with_its_reason():
    if peers.available("backpack") is not None:
        pytest.skip(peers.INSTALL)
    net = plan.DEFAULT[2].network(2)  # convolutions: the torch conversion does not take them (yet)
    call = quantities.call_of("ggn_diagonal", net, 1, *quantities.data(net, 1))
    try:
        net.to_torch()
    except Exception:  # noqa: BLE001 - the conversion refuses it: so must the peer, naming the reason
        with pytest.raises(peers.PeerUnavailableError, match="backpack cannot take this network"):
            peers.prepare("backpack", call)
    with pytest.raises(peers.PeerUnavailableError, match="no staged call for output_jacobian"):
        peers.prepare("backpack", quantities.call_of("output_jacobian", net, 1))


# ---- peak memory against P N n_L entries ----------------------------------------------------------------------------
def _memory_points(peaks, bound):
    return [
        {
            "status": "ok",
            "engine": "manual",
            "quantity": "ggn_diagonal",
            "sweep": "width",
            "n_params": 100 * (i + 1),
            "peak_bytes": peak,
            "memory_bound_bytes": bound,
        }
        for i, peak in enumerate(peaks)
    ]


def test_peak_memory_is_judged_against_a_few_times_p_n_nl_entries_where_the_bound_is_large_enough():
    big = plan.MEMORY_BOUND_MIN_BYTES
    (record,) = report.memory_records(_memory_points([big, 3 * big], big))
    assert record["ratio"] == 3.0 and record["met"] and record["n_params"] == 200 and record["points"] == 2
    (record,) = report.memory_records(_memory_points([big, 5 * big], big))
    assert record["ratio"] == 5.0 and not record["met"]
    line, missed = report.memory_verdict([record])
    assert missed and line.startswith("1 of 1 peak-memory targets miss (<= 4x P N n_L entries): ggn_diagonal / manual")
    (record,) = report.memory_records(_memory_points([big // 2], 4096))  # small bound and peak: pages, fixed costs
    assert record["ratio"] is None and report.memory_verdict([record]) == (None, False)
    table = report.memory_table([record])
    assert "not judged (no point with a bound of at least 1 MiB or a peak of at least 16 MiB): ggn_diagonal" in table
    (record,) = report.memory_records(_memory_points([plan.MEMORY_PEAK_MIN_BYTES], 4096))  # a peak far over it
    assert record["ratio"] == plan.MEMORY_PEAK_MIN_BYTES / 4096 and not record["met"]


def test_a_missed_memory_target_is_a_missed_target_of_the_run():
    from benchmarks.__main__ import verdict_lines

    records = report.memory_records(_memory_points([5 << 20], 1 << 20))
    lines, missed = verdict_lines(None, None, [], records)
    assert missed and lines[0].startswith("1 of 1 peak-memory targets miss")
    lines, missed = verdict_lines(None, None, [], report.memory_records(_memory_points([1 << 20], 1 << 20)))
    assert not missed and lines[0] == "all 1 peak-memory targets judged are met (P N n_L entries)"


def test_the_sweep_records_the_bound_of_the_diagonals_only():
    points = one_group(make_runner(["manual"]), "ggn_diagonal", ["manual"], value=4)
    point = points["manual"]
    assert point["memory_bound_bytes"] == point["n_params"] * 1 * 4 * 8  # P, N = 1, n_L = width 4, float64
    points = one_group(make_runner(["manual"]), "gradient", ["manual"], value=4)
    assert "memory_bound_bytes" not in points["manual"]


# ---- ratio rows: peers of the curvature rows ------------------------------------------------------------------------
def test_a_row_against_manuals_own_gradient_and_a_peer_left_out_is_not_judged():
    row = ratios.Row("ggnvp", (3, 4, 2), 4, {ratios.ManualOf("gradient"): 1e9, "curvlinops": 1.0}, 1)
    results, _ = ratios.run(quick=True, threads=1, rows=[row], progress=False, use_peers=False)
    ours, theirs = results
    assert ours.peer == "manual's gradient (same data)" and ours.passed and ours.pairs == 5 and ours.judged
    assert not theirs.judged and theirs.passed is None and theirs.note.startswith("not judged: left out")
    assert ratios.missed(results) == []
    assert ratios.verdict_line(results) == (
        "all 1 ratio rows meet their target; 1 not judged (the peer cannot run "
        "here): ggnvp, [3, 4, 2], N=4 (P=26) against curvlinops "
        "GGNLinearOperator @ v"
    )


def test_a_contender_whose_first_call_is_too_slow_ends_its_row_unmeasured(monkeypatch):
    monkeypatch.setattr(ratios, "MAX_FIRST_CALL_S", 0.0)
    row = ratios.Row("gradient", (3, 4, 2), 1, {"write floor": 1e9}, 1)
    (result,) = ratios.run(quick=True, threads=1, rows=[row], progress=False)[0]
    assert result.passed is False and result.ratio is None and ratios.missed([result]) == [result]
    assert result.note.startswith("not measured: TimeoutError: manual's first call took")


def test_the_curvature_rows_are_the_issues_rows():
    rows = {
        row.quantity: row
        for row in ratios.ROWS
        if row.quantity in ("ggn_diagonal", "hessian_diagonal", "kfac_factors", "ggnvp")
    }
    for row in rows.values():
        assert row.sizes == (256,) * 4 and row.batch == 32  # width 256, depth 3, N = 32
    assert rows["ggn_diagonal"].targets == {"backpack": 1.0} and rows["hessian_diagonal"].targets == {"backpack": 1.0}
    assert rows["kfac_factors"].targets == {"backpack": 1.0, "curvlinops": 1.0}
    # Issue 24's 1.5 for ggnvp became its count of matrix products over the gradient's (ratios.ggnvp_products).
    assert rows["ggnvp"].targets == {ratios.ManualOf("gradient"): 13 / 8, "curvlinops": None}


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_the_ggnvp_target_is_its_count_of_matrix_products_over_the_gradients(depth, monkeypatch):
    import dataclasses

    from manual._dense_first_order import gradient_values
    from manual._dense_hvp import _prepared, ggnvp_values

    net = Network.random([6] * (depth + 1), activations="sigmoid", loss="mse", seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    model, X, Y, direction = _prepared(net, X, Y, rng.standard_normal(net.n_params), "ggnvp")
    counted = []

    def counting(function):
        def call(*args, **kwargs):
            counted.append(function)
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(type(model.lib), "product", counting(type(model.lib).product))
    model = dataclasses.replace(model, dot=counting(model.dot))
    gradient_values(model, X, Y)
    gradient_products = len(counted)
    counted.clear()
    ggnvp_values(model, X, Y, direction)
    assert (gradient_products, len(counted)) == (3 * depth - 1, 5 * depth - 2)
    assert ratios.ggnvp_products(depth) == len(counted) / gradient_products
