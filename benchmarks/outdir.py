"""The output folder of a benchmark run, guarded: checks before any work, one run at a time, clean interruption.

- ``check_start(args)``: every flag and every ``XVAL_*`` setting, and that ``--out`` can be written; a problem is a
  ``StartError`` whose message ``main`` prints as ``error: ...`` (exit code 2). A flag's error names the flag.
- ``Session``: holds ``--out/.lock`` (the owner's pid) for the run; a second run refuses at once, a lock left by a
  dead process is taken over with a note. ``--resume`` refuses earlier results whose settings differ (naming the
  differences) and a corrupt or foreign ``results.json`` (naming the file, which stays untouched).
- SIGINT / SIGTERM raise ``Interrupted``; ``Session.interrupted`` writes the points measured so far once more (JSON,
  CSV, plots and ``output.txt`` from the same points) and returns the exit code, 130 or 143.
"""
import datetime
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
        raise StartError(f"--threads {args.threads} is not valid; pass a whole number of threads >= 1, or leave it out "
                         "to use every core")
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
        raise StartError(f"--out {out!r} cannot be created: {exc.strerror or exc} (is a parent a file, or read-only?); "
                         "pass a folder you can write") from None
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
        raise StartError(f"{path} cannot be resumed: it is not valid JSON ({exc}); it was left untouched: move it away "
                         "or choose another --out") from None
    points = document.get("points") if isinstance(document, dict) else None
    settings = document.get("settings") if isinstance(document, dict) else None
    if not (isinstance(points, list) and isinstance(settings, dict)
            and all(isinstance(p, dict) and isinstance(p.get("key"), str) for p in points)):
        raise StartError(f"{path} cannot be resumed: it is not a results file of python -m benchmarks (no settings and "
                         "points with keys); it was left untouched: move it away or choose another --out")
    return settings, results.unique_points(points)


def settings_differences(earlier, current):
    """``["dtype: float32 then, float64 now", ...]`` for the ``RESUME_SETTINGS`` that differ."""
    return [f"{name}: {earlier.get(name)!r} then, {current.get(name)!r} now"
            for name in RESUME_SETTINGS if earlier.get(name) != current.get(name)]


# ---- the lock and the interruption ---------------------------------------------------------------------------
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
        self.owned = False
        self.saved = None  # (machine, settings, points) of the last write
        self.printed = []
        self._take_lock(say)
        self._previous_handlers = {}

    def _take_lock(self, say):
        text = f"{os.getpid()} {datetime.datetime.now().isoformat(timespec='seconds')}\n"
        for _ in range(2):
            try:
                handle = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(owner[0]) and owner[0] != os.getpid():
                    raise StartError(f"--out {self.folder} is in use by another benchmark run (pid {owner[0]}, started "
                                     f"{owner[1]}); wait for it to finish or pass another --out") from None
                say(f"note: took over the lock of {self.folder} left by a run that is no longer running "
                    f"(pid {owner[0] if owner else 'unknown'})")
                try:
                    os.unlink(self.lock_path)
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:
                raise StartError(f"--out {self.folder} cannot be written: {exc.strerror or exc}; pass a folder you "
                                 "can write") from None
            with os.fdopen(handle, "w") as out:
                out.write(text)
            self.owned = True
            return
        raise StartError(f"--out {self.folder}: another run took its lock at the same moment; pass another --out")

    def _owner(self):
        """``(pid, started)`` from the lock file, or ``None`` when it cannot be read."""
        try:
            with open(self.lock_path) as handle:
                pid, started = (handle.read().split() + ["?", "?"])[:2]
            return int(pid), started
        except (OSError, ValueError):
            return None

    def release(self):
        self.restore_signals()
        if self.owned and (self._owner() or (None,))[0] == os.getpid():
            os.unlink(self.lock_path)
        self.owned = False

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

    def interrupted(self, signum, write_outputs):
        """The final write after ``signum``: ``write_outputs(machine, settings, points)`` writes JSON, CSV, plots and
        ``output.txt`` of the same points. Prints one line; returns the exit code (128 + signal number)."""
        self.ignore_signals()
        results.remove_temporary_files(self.folder)  # the signal may have cut a write short (this run holds the lock)
        name = signal.Signals(signum).name
        kept = 0
        if self.saved is not None:
            machine, settings, points = self.saved
            points = results.unique_points(points)
            settings = dict(settings, interrupted_by=name)
            write_outputs(machine, settings, points)
            kept = len(points)
        print(f"\ninterrupted by {name}: {kept} points kept in {self.folder} (results.json, results.csv, plots and "
              "output.txt agree); run again with --resume to continue", file=sys.stderr, flush=True)
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
        raise StartError(f"--resume: {path} was measured with other settings ({'; '.join(differences)}); run with "
                         "the same settings, or pass another --out")
    return points


def write_outputs(session, machine, settings, points):
    """JSON, CSV, plots and ``output.txt`` of the same ``points`` (the final write of an interrupted run)."""
    from . import plots, report

    results.save(session.folder, machine, settings, points)
    plots.write_plots(points, session.folder, subtitle=f"{settings.get('device')}, {settings.get('dtype')}",
                      device=settings.get("device"))  # as a finished run's
    lines = session.printed + ["", report.slope_table(points), "",
                               f"interrupted by {settings.get('interrupted_by')} after {len(points)} points; run again "
                               "with --resume to continue"]
    results.atomic_write(os.path.join(session.folder, results.REPORT_NAME), "\n".join(lines) + "\n")
