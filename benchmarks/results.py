"""The results file: every point of a run, with the machine facts, written atomically after each point.

``results.json`` holds ``{"machine": ..., "settings": ..., "points": [...]}``; ``results.csv`` the same points
flat; ``output.txt`` what the run printed (the fitted table and the ratios), written at the end. A point's
``key`` names what was measured (sweep, size, quantity, engine, device, dtype), so that ``--resume`` can skip
points already in the file.
"""

import csv
import io
import json
import os
import tempfile

JSON_NAME, CSV_NAME, REPORT_NAME = "results.json", "results.csv", "output.txt"
CSV_FIELDS = (
    "key",
    "status",
    "reason",
    "sweep",
    "quantity",
    "engine",
    "device",
    "dtype",
    "width",
    "depth",
    "sizes",
    "n_params",
    "batch",
    "time_median_s",
    "time_min_s",
    "time_max_s",
    "time_per_sample_s",
    "first_call_s",
    "compile_s",
    "repeats",
    "number",
    "peak_bytes",
    "memory_method",
    "output_bytes",
    "validated_against",
    "validated_rows",
    "max_relative_error",
    "tolerance",
    "blas_threads",
    "wall_s",
    "remeasured_from_s",
)


def point_key(sweep, sizes, quantity, engine, device, dtype):
    return f"{sweep}|{'x'.join(str(s) for s in sizes)}|{quantity}|{engine}|{device}|{dtype}"


TEMP_PREFIX = ".tmp-"  # atomic_write's temporary files


class WriteError(OSError):
    """An output file could not be written (a full disk, a quota, a removed folder): ``filename`` is the file, ``errno``
    and ``strerror`` the system's reason. The file, written atomically, is as it was before."""


def remove_temporary_files(folder):
    """Delete ``atomic_write``'s temporary files left in ``folder`` (a kill, or a signal landing between a temporary
    file's creation and the ``try`` that removes it, leaves one); the names removed, sorted."""
    removed = sorted(name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX))
    for name in removed:
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    return removed


def atomic_write(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``: a reader (or
    a run killed half-way) sees the old file or the new one, never a torn one. A failure of the system (a full
    disk) is a ``WriteError`` naming ``path``; the temporary file is removed."""
    try:
        _atomic_write(path, text)
    except OSError as exc:
        if isinstance(exc, WriteError):
            raise
        raise WriteError(exc.errno, exc.strerror or str(exc), path) from exc


def _atomic_write(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=os.path.basename(path))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def csv_text(points):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for point in points:
        row = dict(point)
        row["sizes"] = "x".join(str(s) for s in point.get("sizes", []))
        writer.writerow(row)
    return out.getvalue()


def unique_points(points):
    """``points`` with one point per ``key``, the last one kept, in the order of first appearance."""
    by_key = {}
    for point in points:
        by_key[point["key"]] = point
    return list(by_key.values())


def save(folder, machine, settings, points, written=None):
    """Write ``results.json`` and ``results.csv`` in ``folder``, each atomically, with one point per key;
    ``written[name]`` (when a dict is given) is set to the number of points of each file once it is complete."""
    points = unique_points(points)
    document = {"machine": machine, "settings": settings, "points": points}
    atomic_write(os.path.join(folder, JSON_NAME), json.dumps(document, indent=1, sort_keys=False) + "\n")
    if written is not None:
        written[JSON_NAME] = len(points)
    atomic_write(os.path.join(folder, CSV_NAME), csv_text(points))
    if written is not None:
        written[CSV_NAME] = len(points)


def load_points(folder):
    """The points of an earlier run in ``folder`` (``[]`` when there is none), one per key.

    ``benchmarks.outdir.load_earlier`` is the checked version that ``--resume`` uses."""
    path = os.path.join(folder, JSON_NAME)
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return unique_points(json.load(handle).get("points", []))
