"""The output folder of a benchmark run, guarded: checks before any work, one run at a time, clean interruption.

- ``check_start(args)``: every flag and every ``XVAL_*`` setting, and that ``--out`` can be written; a problem is a
  ``StartError`` whose message ``main`` prints as ``error: ...`` (exit code 2). A flag's error names the flag.
- ``Session``: holds ``--out/.lock`` (with the owner's pid) for the run; a second run refuses at once, a lock left by
  a dead process is taken over with a note. ``--resume`` refuses earlier results whose settings differ (naming the
  differences) and a corrupt or foreign ``results.json`` (naming the file, which stays untouched).
- SIGINT / SIGTERM raise ``Interrupted``; ``Session.interrupted`` writes the points measured so far once more (JSON,
  CSV, plots and ``output.txt`` from the same points) and returns the exit code, 130 or 143.
- The lock is an OS lock (``flock``) on ``--out/.lock``: of runs started at once exactly one holds it, and a killed
  run's lock is free again at once. The run that holds it removes the temporary files of writes that a kill cut short.
- An output that cannot be written (a full disk) ends the run with one line, ``Session.write_failed``: the file, the
  system's reason and what the folder holds (exit code 1).
"""

import datetime
import errno
import fcntl
import json
import math
import os
import re
import signal
import sys

from xval import config
from xval.errors import ConfigError

from . import results

LOCK_NAME = ".lock"
WRITE_FAILED = 1  # the exit code when an output could not be written (__main__.EXIT_WRITE_FAILED)
# The settings a resumed run must share with the run it continues: points measured otherwise are not comparable.
RESUME_SETTINGS = ("dtype", "device", "engines", "threads", "quick")
# Readers of every XVAL_* setting this version knows (those a version lacks are skipped).
SETTING_READERS = ("backends", "device", "dtype", "max_bytes", "array_library", "arbiter_digits")


class StartError(Exception):
    """A problem found before any work (a flag, a setting, the output folder); the message is one line."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; ``signum`` says which. A BaseException, so no ``except Exception`` swallows it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


# ---- checks before any work ----------------------------------------------------------------------------------
def check_flags(args):
    """Numeric flags: ``--threads`` a whole number >= 1, ``--max-call-seconds`` a finite number > 0."""
    if args.threads is not None and args.threads < 1:
        raise StartError(
            f"--threads {args.threads} is not valid; pass a whole number of threads >= 1, or leave it out "
            "to use every core"
        )
    seconds = args.max_call_seconds
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise StartError(f"--max-call-seconds {seconds} is not valid; pass a number of seconds > 0, e.g. 4")
    if args.backend is not None:
        try:
            config.backends({"XVAL_BACKEND": args.backend})
        except ConfigError as exc:
            message = re.sub(r"XVAL_BACKEND=('[^']*'|\"[^\"]*\")", f"--backend {args.backend!r}", str(exc))
            raise StartError(message.replace("XVAL_BACKEND=", "--backend ")) from None


def check_settings(environ=None):
    """Read every ``XVAL_*`` setting once, so that a bad value stops the run before any work."""
    for name in SETTING_READERS:
        reader = getattr(config, name, None)
        if reader is not None:
            try:
                reader(environ)
            except ConfigError as exc:
                raise StartError(str(exc)) from None


def check_out(out):
    """``out`` as an absolute folder that exists (created if needed) and can be written; ``StartError`` otherwise."""
    if not out or not out.strip():
        raise StartError("--out is empty; pass a folder for the results, e.g. --out bench-results")
    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise StartError(f"--out {out!r} is a file, not a folder; pass a folder (it is created if missing)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StartError(
            f"--out {out!r} cannot be created: {exc.strerror or exc} (is a parent a file, or read-only?); "
            "pass a folder you can write"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartError(f"--out {out!r} is not writable; pass a folder you can write")
    return path


def check_start(args, environ=None):
    check_flags(args)
    check_settings(environ)
    return check_out(args.out)


# ---- the earlier results (--resume) ---------------------------------------------------------------------------
def load_earlier(folder):
    """``(settings, points)`` of ``folder``'s ``results.json``, or ``(None, [])`` when there is none; a file that is
    not valid JSON or not a results document is a ``StartError`` naming it (it is left untouched)."""
    path = os.path.join(folder, results.JSON_NAME)
    if not os.path.exists(path):
        return None, []
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StartError(
            f"{path} cannot be resumed: it is not valid JSON ({exc}); it was left untouched: move it away "
            "or choose another --out"
        ) from None
    points = document.get("points") if isinstance(document, dict) else None
    settings = document.get("settings") if isinstance(document, dict) else None
    if not (
        isinstance(points, list)
        and isinstance(settings, dict)
        and all(isinstance(p, dict) and isinstance(p.get("key"), str) for p in points)
    ):
        raise StartError(
            f"{path} cannot be resumed: it is not a results file of python -m benchmarks (no settings and "
            "points with keys); it was left untouched: move it away or choose another --out"
        )
    return settings, results.unique_points(points)


def settings_differences(earlier, current):
    """``["dtype: float32 then, float64 now", ...]`` for the ``RESUME_SETTINGS`` that differ."""
    return [
        f"{name}: {earlier.get(name)!r} then, {current.get(name)!r} now"
        for name in RESUME_SETTINGS
        if earlier.get(name) != current.get(name)
    ]


# ---- the lock and the interruption ---------------------------------------------------------------------------
def _parse_owner(data):
    """``(pid, started)`` from a lock file's bytes, or ``None`` when they name no pid."""
    try:
        pid, started = (data.decode().split() + ["?", "?"])[:2]
        return int(pid), started
    except (UnicodeDecodeError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class Session:
    """One run's hold on its output folder: the lock, the signal handlers and the last points written."""

    def __init__(self, folder, say=print):
        self.folder, self.lock_path = folder, os.path.join(folder, LOCK_NAME)
        self.owned, self._handle = False, None
        self.saved = None  # (machine, settings, points) of the last write
        self.written = {}  # file name -> how many points it holds, once this run wrote it completely
        self.printed = []
        self._previous_handlers = {}
        self._take_lock(say)
        try:
            self.clean_temporaries(say)
        except OSError as exc:
            self.release()
            raise StartError(
                f"--out {self.folder}: a temporary file of an interrupted write cannot be removed: "
                f"{exc.strerror or exc}; remove the .tmp-* files there or pass another --out"
            ) from None

    def _take_lock(self, say):
        """Hold ``--out/.lock`` by an OS lock (``flock``), which a dead run's process gives back by itself, so taking a
        stale lock over is one atomic step: of many runs started at once, exactly one gets it."""
        for _ in range(5):
            try:
                handle = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as exc:
                raise StartError(
                    f"--out {self.folder} cannot be written: {exc.strerror or exc}; pass a folder you can write"
                ) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(handle)
                raise StartError(
                    f"--out {self.folder} is in use by another benchmark run ({self._owner_text()}); "
                    "wait for it to finish or pass another --out"
                ) from None
            if not self._is_current(handle):  # a run releasing it unlinked this file after we opened it: retry
                os.close(handle)
                continue
            owner = _parse_owner(os.pread(handle, 200, 0))
            if owner is not None and owner[0] != os.getpid() and _alive(owner[0]):
                # a live process named in a lock nobody holds: a run of a version that only wrote its pid
                os.close(handle)
                raise StartError(
                    f"--out {self.folder} is in use by another benchmark run (pid {owner[0]}, started "
                    f"{owner[1]}); wait for it to finish or pass another --out"
                )
            if owner is not None and owner[0] != os.getpid():
                say(
                    f"note: took over the lock of {self.folder} left by a run that is no longer running "
                    f"(pid {owner[0]})"
                )
            text = f"{os.getpid()} {datetime.datetime.now().isoformat(timespec='seconds')}\n".encode()
            try:
                os.ftruncate(handle, 0)
                os.pwrite(handle, text, 0)
            except OSError as exc:
                self._unlink_if_ours(handle)
                os.close(handle)
                raise StartError(
                    f"--out {self.folder} cannot be written: {exc.strerror or exc}; pass a folder you can write"
                ) from None
            self._handle, self.owned = handle, True
            return
        raise StartError(f"--out {self.folder}: other runs kept taking and releasing its lock; pass another --out")

    def _is_current(self, handle):
        """Whether ``handle`` is the file at the lock's path (not one a releasing run has just unlinked)."""
        try:
            return os.stat(self.lock_path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            return False

    def _unlink_if_ours(self, handle):
        if self._is_current(handle):
            os.unlink(self.lock_path)

    def _owner(self):
        """``(pid, started)`` from the lock file, or ``None`` when it cannot be read."""
        try:
            with open(self.lock_path, "rb") as handle:
                return _parse_owner(handle.read(200))
        except OSError:
            return None

    def _owner_text(self):
        owner = self._owner()
        return f"pid {owner[0]}, started {owner[1]}" if owner else "it has not written its pid yet"

    def release(self):
        """Give the lock back: the file is unlinked before the OS lock is let go, so a run that opened it meanwhile
        sees that it is gone and takes a fresh one."""
        self.restore_signals()
        if self.owned:
            self._unlink_if_ours(self._handle)
            os.close(self._handle)
        self.owned = False

    def clean_temporaries(self, say):
        """Remove the temporary files of writes that a kill cut short (this run holds the lock: nobody else writes)."""
        removed = results.remove_temporary_files(self.folder)
        if removed:
            say(
                f"note: removed {len(removed)} unfinished temporary file(s) of an interrupted write from {self.folder} "
                f"({', '.join(removed)})"
            )

    def catch_signals(self):
        """SIGINT and SIGTERM raise ``Interrupted`` in the main thread from now on."""

        def handler(signum, frame):
            raise Interrupted(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def restore_signals(self):
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._previous_handlers = {}

    def ignore_signals(self):
        """While the final write runs, a second signal must not tear it."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)

    def remember(self, machine, settings, points):
        self.saved = (machine, settings, points)

    # ---- the folder's files, and what they hold -----------------------------------------------------------------
    def save(self, machine, settings, points):
        """``results.json`` and ``results.csv`` of ``points``; ``written`` keeps how many points each file holds."""
        results.save(self.folder, machine, settings, points, written=self.written)

    def write_plots(self, points, subtitle, device):
        """The PNG plots; their names. A system failure (a full disk) is a ``results.WriteError``."""
        from . import plots

        try:
            names = plots.write_plots(points, self.folder, subtitle=subtitle, device=device)
        except OSError as exc:
            raise results.WriteError(exc.errno, exc.strerror or str(exc), exc.filename or self.folder) from exc
        self.written["plots"] = len(results.unique_points(points))
        return names

    def write_report(self, text):
        results.atomic_write(os.path.join(self.folder, results.REPORT_NAME), text)
        self.written[results.REPORT_NAME] = True

    def write_failed(self, exc):
        """Report ``exc`` (a ``results.WriteError``) in one line, with what the folder holds; the exit code, 1."""
        try:
            results.remove_temporary_files(self.folder)
        except OSError:
            pass
        counts = {name: self.written[name] for name in (results.JSON_NAME, results.CSV_NAME) if name in self.written}
        if counts:
            if len(set(counts.values())) == 1:
                held = f"{' and '.join(counts)} with {next(iter(counts.values()))} points"
            else:
                held = ", ".join(f"{name} with {count} points" for name, count in counts.items())
            saved = f"saved in {self.folder}: {held}, as of their last complete write"
        else:
            saved = f"nothing of this run was saved in {self.folder} (its files are as they were before the run)"
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free some space" if full else "make the folder writable"
        print(
            f"\nerror: could not write {exc.filename}: {exc.strerror}; {saved}; {fix}, then run again with --resume "
            "to continue",
            file=sys.stderr,
            flush=True,
        )
        return WRITE_FAILED

    def interrupted(self, signum, write_outputs):
        """The final write after ``signum``: ``write_outputs(machine, settings, points)`` writes JSON, CSV, plots and
        ``output.txt`` of the same points. Prints one line; returns the exit code (128 + signal number)."""
        self.ignore_signals()
        name = signal.Signals(signum).name
        kept = 0
        try:
            results.remove_temporary_files(self.folder)  # the signal may have cut a write short (we hold the lock)
            if self.saved is not None:
                machine, settings, points = self.saved
                points = results.unique_points(points)
                settings = dict(settings, interrupted_by=name)
                write_outputs(machine, settings, points)
                kept = len(points)
        except results.WriteError as exc:
            self.write_failed(exc)
            print(f"interrupted by {name}", file=sys.stderr, flush=True)
            return 128 + signum
        print(
            f"\ninterrupted by {name}: {kept} points kept in {self.folder} (results.json, results.csv, plots and "
            "output.txt agree); run again with --resume to continue",
            file=sys.stderr,
            flush=True,
        )
        return 128 + signum


def resumed_points(folder, settings, say=print):
    """The points to keep: with ``--resume`` (``settings`` given) the earlier run's, after checking that it was
    measured with the same ``RESUME_SETTINGS``; without, none (an earlier file is replaced, with a note)."""
    earlier, points = load_earlier(folder) if settings is not None else (None, [])
    path = os.path.join(folder, results.JSON_NAME)
    if settings is None:
        if os.path.exists(path):
            shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
            say(f"note: replacing the results already in {shown} (pass --resume to keep and extend them)")
        return []
    if earlier is None:
        return []
    differences = settings_differences(earlier, settings)
    if differences:
        raise StartError(
            f"--resume: {path} was measured with other settings ({'; '.join(differences)}); run with "
            "the same settings, or pass another --out"
        )
    return points


def write_outputs(session, machine, settings, points):
    """JSON, CSV, plots and ``output.txt`` of the same ``points`` (the final write of an interrupted run)."""
    from . import report

    session.save(machine, settings, points)
    session.write_plots(points, f"{settings.get('device')}, {settings.get('dtype')}", settings.get("device"))
    lines = session.printed + [
        "",
        report.slope_table(points),
        "",
        f"interrupted by {settings.get('interrupted_by')} after {len(points)} points; run again "
        "with --resume to continue",
    ]
    session.write_report("\n".join(lines) + "\n")
