"""The parts of scripts/gpu_check.sh that run without a GPU: its arguments, its refusal on a machine without one
(before writing anything), and its list of files (the benchmark's own outputs among them, at most 8)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import plots, results

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*arguments, env=None):
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, **(env or {})),
    )


def test_without_arguments_it_prints_its_usage_and_exits_2():
    done = run()
    assert done.returncode == 2 and "usage: bash scripts/gpu_check.sh OUT" in done.stderr


def test_a_flag_in_place_of_out_is_a_usage_error(tmp_path):
    done = run("--quick")
    assert done.returncode == 2 and "OUT must be a folder to write the results in, got '--quick'" in done.stderr


def test_it_writes_at_most_eight_files_among_them_the_benchmarks_outputs():
    done = run("--files")
    assert done.returncode == 0
    files = done.stdout.split()
    assert len(files) <= 8 and len(set(files)) == len(files)
    expected = {results.JSON_NAME, results.CSV_NAME, results.REPORT_NAME, plots.TIME_PNG, plots.MEMORY_PNG, "tests.log"}
    assert expected <= set(files)


def test_without_a_gpu_it_refuses_before_writing_anything(tmp_path):
    from benchmarks.machine import gpu_names

    if gpu_names():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "gpu"
    # CUDA_VISIBLE_DEVICES="" hides any GPU from torch and jax, as on a machine without one.
    done = run(str(out), env={"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 3, done.stderr
    assert "no CUDA GPU found (neither torch nor jax sees one), so nothing was run or written" in done.stderr
    assert not out.exists()


def test_the_old_baseline_script_runs_the_check():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_baseline.sh"), "--files"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "tests.log" in done.stdout.split()
