"""Benchmark output that cannot be corrupted: one run per folder (a lock with the owner's pid), --resume only with the
same settings and a readable results file, unusable --out and bad flags refused before any work, and SIGINT/SIGTERM
ending with one consistent final write."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks import outdir, results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--quick", "--backend", "manual", "--no-peers"]


def bench(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_refused(run, message):
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: ") and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---- flags, settings and --out, before any work -----------------------------------------------------------------
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--threads", "0"], "--threads 0 is not valid; pass a whole number of threads >= 1"),
        (["--threads", "-1"], "--threads -1 is not valid"),
        (["--threads", "two"], "argument --threads: invalid int value: 'two'"),
        (["--max-call-seconds", "nan"], "--max-call-seconds nan is not valid"),
        (["--max-call-seconds", "0"], "--max-call-seconds 0.0 is not valid"),
        (["--backend", " , "], "--backend ' , ' names no engine"),
        (["--quantities", "hessain"], "--quantities names unknown quantities ['hessain']"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ],
)
def test_a_bad_flag_is_named_with_exit_code_2(tmp_path, flags, message):
    run = bench(*SMALL, "--out", str(tmp_path / "out"), *flags)
    assert_refused(run, message)
    assert "XVAL_" not in run.stderr
    assert not (tmp_path / "out" / results.JSON_NAME).exists()


@pytest.mark.parametrize(
    "name, value, message",
    [
        (
            "XVAL_MAX_BYTES",
            "inf",
            "XVAL_MAX_BYTES='inf' is not valid; give a positive number of bytes (it is not finite",
        ),
        (
            "XVAL_MAX_BYTES",
            "1.9",
            "XVAL_MAX_BYTES='1.9' is not valid; give a positive number of bytes (1.9 bytes is not a whole",
        ),
        ("XVAL_DTYPE", "float16", "XVAL_DTYPE='float16' is not valid"),
        ("XVAL_DEVICE", "tpu", "XVAL_DEVICE='tpu' is not valid"),
    ],
)
def test_a_bad_setting_is_named_with_exit_code_2(tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    assert_refused(bench(*SMALL, "--out", str(tmp_path / "out")), message)


def test_an_unusable_out_is_refused_before_any_work(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert_refused(bench(*SMALL, "--out", ""), "--out is empty")
    assert_refused(bench(*SMALL, "--out", str(a_file)), "is a file, not a folder")
    assert_refused(bench(*SMALL, "--out", str(a_file / "inside")), "cannot be created")
    assert_refused(bench(*SMALL, "--out", "/proc/xval-bench"), "cannot be created")
    assert a_file.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_refused(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert_refused(bench(*SMALL, "--out", str(folder)), "is not writable")
    finally:
        folder.chmod(0o755)


# ---- one run per folder ------------------------------------------------------------------------------------------
def test_a_second_run_into_a_folder_in_use_refuses_at_once(tmp_path):
    (tmp_path / outdir.LOCK_NAME).write_text(f"{os.getpid()} 2026-01-01T00:00:00\n")  # this live process owns it
    run = bench(*SMALL, "--out", str(tmp_path))
    assert_refused(run, f"is in use by another benchmark run (pid {os.getpid()}, started 2026-01-01T00:00:00)")
    assert (tmp_path / outdir.LOCK_NAME).read_text().startswith(str(os.getpid()))
    assert not (tmp_path / results.JSON_NAME).exists()


def test_a_stale_lock_is_taken_over_with_a_note_and_released(tmp_path):
    pid = dead_pid()
    (tmp_path / outdir.LOCK_NAME).write_text(f"{pid} 2026-01-01T00:00:00\n")
    notes = []
    session = outdir.Session(str(tmp_path), say=notes.append)
    assert notes == [f"note: took over the lock of {tmp_path} left by a run that is no longer running (pid {pid})"]
    assert (tmp_path / outdir.LOCK_NAME).read_text().split()[0] == str(os.getpid())
    with pytest.raises(outdir.StartError, match="is in use by another benchmark run"):
        # the same folder from another process: simulated by a lock naming a live pid that is not ours
        (tmp_path / outdir.LOCK_NAME).write_text(f"{os.getppid()} now\n")
        outdir.Session(str(tmp_path))
    (tmp_path / outdir.LOCK_NAME).write_text(f"{os.getpid()} now\n")
    session.release()
    assert not (tmp_path / outdir.LOCK_NAME).exists()


# ---- --resume --------------------------------------------------------------------------------------------------
def _document(settings, keys):
    return {"machine": {}, "settings": settings, "points": [{"key": key, "status": "ok"} for key in keys]}


SETTINGS = {"dtype": "float64", "device": "cpu", "engines": ["manual"], "threads": 2, "quick": True}


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "cannot be resumed: it is not valid JSON"),
        (json.dumps({"rows": [1, 2]}), "cannot be resumed: it is not a results file of python -m benchmarks"),
        (json.dumps([1, 2]), "cannot be resumed: it is not a results file"),
    ],
)
def test_a_corrupt_or_foreign_results_file_is_refused_and_left_untouched(tmp_path, text, message):
    path = tmp_path / results.JSON_NAME
    path.write_text(text)
    with pytest.raises(outdir.StartError, match=message) as info:
        outdir.resumed_points(str(tmp_path), SETTINGS)
    assert str(path) in str(info.value)
    assert path.read_text() == text


@pytest.mark.parametrize(
    "name, other",
    [("dtype", "float32"), ("device", "cuda"), ("engines", ["manual", "jax"]), ("threads", 1), ("quick", False)],
)
def test_resume_refuses_other_settings_naming_the_difference(tmp_path, name, other):
    (tmp_path / results.JSON_NAME).write_text(json.dumps(_document(dict(SETTINGS, **{name: other}), ["a"])))
    with pytest.raises(
        outdir.StartError,
        match=f"was measured with other settings \\({name}: {other!r} then, {SETTINGS[name]!r} now\\)".replace(
            "[", "\\["
        ),
    ):
        outdir.resumed_points(str(tmp_path), SETTINGS)


def test_resume_keeps_one_point_per_key_and_saving_never_writes_duplicates(tmp_path):
    (tmp_path / results.JSON_NAME).write_text(json.dumps(_document(SETTINGS, ["a", "b", "a"])))
    assert [p["key"] for p in outdir.resumed_points(str(tmp_path), SETTINGS)] == ["a", "b"]
    results.save(str(tmp_path), {}, SETTINGS, [{"key": "a", "status": "failed"}, {"key": "a", "status": "ok"}])
    saved = json.loads((tmp_path / results.JSON_NAME).read_text())["points"]
    assert saved == [{"key": "a", "status": "ok"}]
    assert len(list(csv.DictReader(open(tmp_path / results.CSV_NAME)))) == 1


def test_resume_with_a_corrupt_file_exits_2_before_any_work(tmp_path):
    (tmp_path / results.JSON_NAME).write_text("{torn")
    assert_refused(bench(*SMALL, "--quantities", "forward", "--resume", "--out", str(tmp_path)), "is not valid JSON")
    assert (tmp_path / results.JSON_NAME).read_text() == "{torn"
    assert not (tmp_path / outdir.LOCK_NAME).exists()


# ---- SIGINT and SIGTERM ------------------------------------------------------------------------------------------
def test_a_signal_inside_a_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The signal lands after ``atomic_write`` made its temporary file and before anything could remove it: the
    final write clears it, so the folder holds the results and plots only."""
    from benchmarks import __main__ as run

    real_save, signalled = results.save, []

    def cut_short(folder, machine, settings, points, **written):
        real_save(folder, machine, settings, points, **written)
        if points and not signalled:
            signalled.append(True)
            (tmp_path / (results.TEMP_PREFIX + "abc" + results.JSON_NAME)).write_text("{")
            raise outdir.Interrupted(signal.SIGINT)

    monkeypatch.setattr(results, "save", cut_short)
    assert run.main([*SMALL, "--out", str(tmp_path)]) == 128 + signal.SIGINT
    assert sorted(os.listdir(tmp_path)) == sorted(
        [results.JSON_NAME, results.CSV_NAME, results.REPORT_NAME, "time_per_sample.png", "peak_memory.png"]
    )


def test_a_signal_right_after_a_points_write_keeps_that_point(tmp_path, monkeypatch, capsys):
    """The signal lands just after results.json took the first point (the moment the test below waits for): the
    final write keeps that point, its plots included."""
    from benchmarks import __main__ as run

    real_save, signalled = results.save, []

    def save_then_signal(folder, machine, settings, points, **written):
        real_save(folder, machine, settings, points, **written)
        if points and not signalled:
            signalled.append(len(points))
            raise outdir.Interrupted(signal.SIGTERM)

    monkeypatch.setattr(results, "save", save_then_signal)
    code = run.main([*SMALL, "--out", str(tmp_path)])
    assert code == 128 + signal.SIGTERM and signalled == [1]
    points = json.loads((tmp_path / results.JSON_NAME).read_text())["points"]
    assert len(points) == 1 and points[0]["status"] == "ok"
    assert {"time_per_sample.png", "peak_memory.png"} <= set(os.listdir(tmp_path))
    assert "interrupted by SIGTERM: 1 points kept" in capsys.readouterr().err


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_run_with_a_final_consistent_write(tmp_path, signum, code):
    env = dict(os.environ, PYTHONPATH=ROOT)
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", *SMALL, "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if json.loads((tmp_path / results.JSON_NAME).read_text())["points"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
    assert child.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"interrupted by {signal.Signals(signum).name}: ")
    points = json.loads((tmp_path / results.JSON_NAME).read_text())["points"]
    rows = list(csv.DictReader(open(tmp_path / results.CSV_NAME)))
    assert [p["key"] for p in points] == [r["key"] for r in rows] and len({p["key"] for p in points}) == len(points)
    report = (tmp_path / results.REPORT_NAME).read_text()
    assert f"after {len(points)} points" in report
    statuses = [(p["quantity"], p["engine"], p["status"], p.get("reason", "")) for p in points]
    assert sorted(os.listdir(tmp_path)) == sorted(
        [results.JSON_NAME, results.CSV_NAME, results.REPORT_NAME, "time_per_sample.png", "peak_memory.png"]
    ), (statuses, report, err)


# ---- faults: many runs at once, a full disk, a kill in the middle of a write ------------------------------------
RACE = """import multiprocessing as mp, os, sys
sys.path.insert(0, {root!r})
from benchmarks import outdir

def taker(folder, start, done, got):
    start.wait()
    try:
        session = outdir.Session(folder, say=lambda text: None)
    except outdir.StartError:
        done.wait()
        return
    with got.get_lock():
        got.value += 1
    done.wait()  # hold the lock until every taker has tried
    session.release()

context = mp.get_context("fork")
folder, takers, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
counts = []
for _ in range(trials):
    dead = context.Process(target=lambda: None)
    dead.start()
    dead.join()
    with open(os.path.join(folder, ".lock"), "w") as handle:
        handle.write(f"{{dead.pid}} 2026-01-01T00:00:00\\n")  # a stale lock, as a killed run leaves it
    start, done, got = context.Barrier(takers), context.Barrier(takers), context.Value("i", 0)
    runs = [context.Process(target=taker, args=(folder, start, done, got)) for _ in range(takers)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    counts.append(got.value)
print(" ".join(map(str, counts)))
"""


def test_of_many_runs_taking_a_stale_lock_at_once_exactly_one_gets_it(tmp_path):
    """Eight runs released at the same moment on a stale lock, 20 times: one holder every time (the check-then-unlink
    lock let two in 8 times in 30)."""
    driver = tmp_path / "race.py"
    driver.write_text(RACE.format(root=ROOT))
    folder = tmp_path / "out"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, str(driver), str(folder), "8", "20"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"] * 20


def test_a_lock_held_by_a_live_run_refuses_and_its_release_frees_it(tmp_path):
    first = outdir.Session(str(tmp_path))
    with pytest.raises(outdir.StartError, match=f"in use by another benchmark run \\(pid {os.getpid()}, started "):
        outdir.Session(str(tmp_path))
    first.release()
    assert not (tmp_path / outdir.LOCK_NAME).exists()
    notes = []
    outdir.Session(str(tmp_path), say=notes.append).release()
    assert notes == []  # a released lock is not a stale one


def _temporaries(folder):
    return [name for name in os.listdir(folder) if name.startswith(results.TEMP_PREFIX)]


@pytest.mark.parametrize("failing_write, json_points, csv_points", [(7, 3, 3), (8, 4, 3)])
def test_a_full_disk_ends_the_run_with_one_line_saying_what_was_saved(
    tmp_path, monkeypatch, capsys, failing_write, json_points, csv_points
):
    """The 7th file write (the 4th point's results.json) or the 8th (its results.csv) finds the disk full."""
    from benchmarks import __main__ as run

    real_fsync, writes = os.fsync, []

    def fsync(handle):
        writes.append(handle)
        if len(writes) == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    code = run.main([*SMALL, "--quantities", "forward", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    failed = results.JSON_NAME if failing_write % 2 else results.CSV_NAME
    held = (
        f"results.json and results.csv with {json_points} points"
        if json_points == csv_points
        else f"results.json with {json_points} points, results.csv with {csv_points} points"
    )
    assert err.strip().splitlines()[-1] == (
        f"error: could not write {tmp_path / failed}: No space left on device; saved in {tmp_path}: {held}, as of "
        "their last complete write; free some space, then run again with --resume to continue"
    )
    assert len(json.loads((tmp_path / results.JSON_NAME).read_text())["points"]) == json_points
    assert len(list(csv.DictReader(open(tmp_path / results.CSV_NAME)))) == csv_points
    assert _temporaries(tmp_path) == [] and not (tmp_path / outdir.LOCK_NAME).exists()
    monkeypatch.undo()  # space freed: --resume goes on from the saved points
    assert run.main([*SMALL, "--quantities", "forward", "--resume", "--out", str(tmp_path)]) == 0
    points = json.loads((tmp_path / results.JSON_NAME).read_text())["points"]
    assert len(points) == 9 and all(p["status"] == "ok" for p in points)  # 3 sizes in each of the 3 quick sweeps


def test_a_really_full_disk_a_tiny_tmpfs(tmp_path):
    """The same on a 48 KiB tmpfs (mounted in a user and mount namespace; skipped where that is not allowed)."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    count = (
        "import json, os, sys; d = sys.argv[1]; j = os.path.join(d, 'results.json'); "
        "print(json.dumps({'files': sorted(os.listdir(d)), 'points': len(json.load(open(j))['points']) "
        "if os.path.exists(j) else 0}))"
    )
    script = (
        f"mount -t tmpfs -o size=48k tmpfs {mount} || exit 77\n"
        f"PYTHONPATH={ROOT} {sys.executable} -m benchmarks {' '.join(SMALL)} --out {mount} "
        f">{tmp_path}/out.txt 2>{tmp_path}/err.txt; echo $? >{tmp_path}/rc\n"
        f'{sys.executable} -c "{count}" {mount} >{tmp_path}/disk.json\n'
    )
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 or not (tmp_path / "rc").exists():
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[-200:]}")
    err = (tmp_path / "err.txt").read_text()
    disk = json.loads((tmp_path / "disk.json").read_text())
    assert (tmp_path / "rc").read_text().strip() == "1" and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: could not write ") and ": No space left on device; saved in " in last
    assert f"with {disk['points']} points" in last and disk["points"] > 0
    assert not [name for name in disk["files"] if name.startswith(results.TEMP_PREFIX) or name == outdir.LOCK_NAME]


KILLED_IN_CSV_WRITE = """import os, signal, sys
sys.path.insert(0, {root!r})
real_fsync = os.fsync

def fsync(handle):  # dies inside the 3rd point's results.csv write: its temporary file written, not yet renamed
    if os.readlink(f"/proc/self/fd/{{handle}}").endswith("results.csv"):
        fsync.csv += 1
        if fsync.csv == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_fsync(handle)

fsync.csv = 0
os.fsync = fsync
from benchmarks import __main__ as run
run.main(sys.argv[1:])
"""


def test_a_kill_inside_the_csv_write_leaves_a_temporary_file_that_resume_removes(tmp_path):
    driver = tmp_path / "killed.py"
    driver.write_text(KILLED_IN_CSV_WRITE.format(root=ROOT))
    out = tmp_path / "out"
    killed = subprocess.run(
        [sys.executable, str(driver), *SMALL, "--quantities", "forward", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = _temporaries(out)
    assert len(left) == 1 and left[0].endswith(results.CSV_NAME)
    assert len(json.loads((out / results.JSON_NAME).read_text())["points"]) == 3
    resumed = bench(*SMALL, "--quantities", "forward", "--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    note = f"note: removed 1 unfinished temporary file(s) of an interrupted write from {out} ({left[0]})"
    assert note in resumed.stdout
    assert "took over the lock" in resumed.stdout
    assert _temporaries(out) == []
    points = json.loads((out / results.JSON_NAME).read_text())["points"]
    assert len(points) == 9 and len(list(csv.DictReader(open(out / results.CSV_NAME)))) == 9
