"""The layout holds: the references and the kernel never import the hand-written engine, every engine names the
same activations and losses, every deliberate error derives from the suite's base error, and the tests run
without pytest-xdist."""

import ast
import inspect
import os
import subprocess
import sys

import pytest

import manual
import xval
from manual import symmetry
from xval import definitions, errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("manual", "torch_ref", "jax_ref", "xval", "benchmarks")


def imports_of(package):
    """``{module: set of project packages it imports}`` for every module of ``package``, read from the source."""
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            imported = set()
            for node in ast.walk(ast.parse(open(path).read(), path)):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
                elif isinstance(node, ast.ImportFrom) and node.level > 0:
                    imported.add(package)
            found[module] = imported & set(PACKAGES)
    return found


def reachable(package):
    """Every project package that ``package`` reaches through imports, itself included."""
    seen, todo = set(), [package]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for imported in imports_of(current).values():
            todo.extend(imported - seen)
    return seen


@pytest.mark.parametrize("package", ["torch_ref", "jax_ref", "xval"])
def test_references_and_kernel_never_import_manual(package):
    offenders = {module: sorted(imported) for module, imported in imports_of(package).items() if "manual" in imported}
    assert not offenders, (
        f"{package} imports manual (an oracle must not share code with the engine it checks): {offenders}"
    )
    assert "manual" not in reachable(package), f"{package} reaches manual through {sorted(reachable(package))}"


def test_the_import_walk_sees_an_import_of_manual():
    """The walk above can fail: it finds manual's own imports of xval and the benchmarks' import of manual."""
    assert "xval" in reachable("manual")
    assert any("xval" in imported for imported in imports_of("manual").values())


def test_kernel_imports_no_engine():
    assert reachable("xval") == {"xval"}


def test_every_engine_names_the_same_activations_and_losses():
    torch_activations = pytest.importorskip("torch_ref._activations")
    jax_activations = pytest.importorskip("jax_ref._activations")
    for table in ("ACTIVATIONS", "LOSSES"):
        expected = set(getattr(definitions, table))
        assert set(getattr(manual, table)) == expected
        assert set(getattr(torch_activations, table)) == expected
        assert set(getattr(jax_activations, table)) == expected


def test_activation_facts_live_on_the_record():
    assert manual.get_activation("sigmoid").max_slope == 0.25 and manual.get_activation("tanh").max_slope == 1.0
    assert manual.get_activation("sigmoid").sign_shift == 1.0 and manual.get_activation("relu").sign_shift is None
    assert symmetry.sign_flip_names() == ["identity", "sigmoid", "tanh"]
    assert [name for name, act in manual.ACTIVATIONS.items() if act.can_die] == ["relu"]


def test_every_deliberate_error_derives_from_the_base_error():
    classes = [
        value
        for module in (errors, symmetry, manual)
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, Exception) and value.__module__.startswith(("xval", "manual"))
    ]
    from xval import engines

    classes.append(engines.EngineImportError)
    assert len(classes) > 10
    assert all(issubclass(cls, errors.XvalError) for cls in classes), [
        c for c in classes if not issubclass(c, errors.XvalError)
    ]


def test_old_public_names_keep_working():
    assert manual.Network is xval.Network and manual.ShapeError is xval.ShapeError
    assert manual.config is xval.config and manual.memory is xval.memory
    assert callable(manual.hessian_block) and callable(manual.symmetry.transform)


def test_the_tests_run_without_pytest_xdist(tmp_path):
    """``-p no:xdist`` is pytest as if xdist were not installed: the suite's hooks must not need it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:xdist",
            "-q",
            "-p",
            "no:cacheprovider",
            os.path.join(ROOT, "tests", "test_config.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "INTERNALERROR" not in result.stdout + result.stderr, (
        result.stdout[-2000:] + result.stderr[-2000:]
    )
    assert " passed" in result.stdout
