"""The import path with the standard library first, so that a file of the current folder named like a
standard-library module (an engine called ``json.py``) is never imported in that module's place.

It imports nothing that the interpreter has not imported already: ``python -m xval`` reorders its path with it before
importing anything else.
"""

import os
import sys


def _standard_library_folders():
    """The folders of the standard library: the one ``os`` came from, and its compiled extensions' folder."""
    home = os.path.normcase(os.path.realpath(os.path.dirname(os.__file__)))
    return {home, os.path.join(home, "lib-dynload")}


def is_standard(entry, folders=None):
    """Whether the ``sys.path`` entry ``entry`` is a folder (or zip) of the standard library, not of packages."""
    folders = folders or _standard_library_folders()
    real = os.path.normcase(os.path.realpath(entry or os.curdir))
    if "site-packages" in real or "dist-packages" in real:
        return False
    if real.endswith(".zip"):  # python311.zip, next to the standard library
        return os.path.dirname(real) in {os.path.dirname(folder) for folder in folders}
    return real in folders


def stdlib_first(path=None):
    """``path`` (default ``sys.path``) with the standard library's entries moved to the front, the rest in order."""
    path = list(sys.path if path is None else path)
    folders = _standard_library_folders()
    return [entry for entry in path if is_standard(entry, folders)] + [
        entry for entry in path if not is_standard(entry, folders)
    ]
