"""The contract is the one home of every per-quantity fact: every built-in engine implements every quantity it lists,
and no other module keys a table by a quantity's name or branches on it (an AST scan)."""

import ast
import os

import numpy as np
import pytest

from xval import contract, engines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# "loss" is also the word for the loss itself (a record, a diagnosis's factor): it is not scanned.
NAMES = (set(contract.QUANTITIES) | set(contract.PENDING) | {contract.FINITE_DIFFERENCE_GRADIENT.name}) - {"loss"}
ALL = {**contract.QUANTITIES, **contract.PENDING}
# Where a quantity's name may key a table: the contract itself, the benchmarks' row tables (what a row or a sweep
# measures is data about the row), and an engine's table of its own implementations.
ALLOWED = {
    "xval/contract.py",
    "benchmarks/ratios.py",
    "benchmarks/gpu_rows.py",
    "benchmarks/plan.py",
    "xval/arbiter/quantities.py",
}
SCANNED = ("xval", "manual", "torch_ref", "jax_ref", "benchmarks")


@pytest.mark.parametrize("engine", ["manual", "torch", "jax", "arbiter"])
def test_every_built_in_engine_implements_every_quantity_of_the_contract(engine):
    try:
        module = engines.load(engine)
    except Exception as exc:  # a missing package: the registry says what to install
        pytest.skip(str(exc))
    missing = [name for name, quantity in ALL.items() if not quantity.implemented_by(module)]
    assert not missing, f"engine {engine!r} lacks {missing}: a quantity in the contract is one every engine has"


@pytest.mark.parametrize("engine", ["manual", "torch", "jax", "arbiter"])
def test_every_contract_function_has_the_contracts_typed_signature(engine):
    """``inspect.signature`` of each contract function: ``net`` then the contract's arguments by name, each annotated,
    and the result annotated (``help(manual.gradient)`` shows what to pass and what comes back)."""
    import inspect

    try:
        module = engines.load(engine)
    except Exception as exc:
        pytest.skip(str(exc))
    for name, quantity in ALL.items():
        signature = inspect.signature(getattr(module, name))
        assert list(signature.parameters) == ["net", *quantity.parameters], (engine, name, signature)
        unannotated = [p for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
        assert not unannotated and signature.return_annotation is not inspect.Signature.empty, (engine, name, signature)
    assert inspect.signature(module.gradient).return_annotation is np.ndarray
    assert inspect.signature(module.loss).return_annotation is float


def _keyed_by_name(tree):
    """``(line, name)`` of every quantity name used as a dict key, a set or tuple member tested with ``in``, or one
    side of ``==`` / ``!=``: a table or an if-chain keyed by quantity."""
    found = []

    def names_in(node):
        return [(n.lineno, n.value) for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in NAMES]

    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in NAMES:
                    found.append((key.lineno, key.value))
        elif isinstance(node, ast.Compare):
            if any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in NAMES:
                        found.append((side.lineno, side.value))
                    elif isinstance(side, (ast.Set, ast.Tuple, ast.List)):
                        found += names_in(side)
    return found


def test_no_table_or_branch_is_keyed_by_a_quantity_name_outside_the_contract():
    offenders = {}
    for package in SCANNED:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
                if not name.endswith(".py") or relative in ALLOWED:
                    continue
                found = _keyed_by_name(ast.parse(open(path).read(), path))
                if found:
                    offenders[relative] = found
    assert not offenders, (
        f"quantity names keying tables or branches outside the contract: {offenders}; put the "
        "fact on the Quantity record in xval/contract.py and read it from there"
    )


def test_the_scan_finds_a_table_keyed_by_a_quantity_name():
    assert _keyed_by_name(ast.parse('SPEED = {"hessian": 2}\nif q == "gradient": pass')) == [
        (1, "hessian"),
        (2, "gradient"),
    ]
