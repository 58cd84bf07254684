"""The catalogue of malformed calls, shared by ``tests/test_fuzz.py`` and ``scripts/probe_inputs.py``.

A call is ``(function, arguments)``; a malformed variant replaces one argument and says what must happen:
``"error"`` (a documented error of ``xval.errors`` with a message), ``"same"`` (the variant holds the same values in
another form, a list or an integer array: the result equals the valid call's result on those values) or
``"finite"`` (a documented error, or a finite result: inputs so large that the network may overflow).
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from xval.errors import XvalError
from xval.network import Network

SIZES = [3, 4, 2]


@dataclass(frozen=True)
class Variant:
    """Replace argument ``argument`` by ``make(valid_arguments)``; ``expect`` is ``error``, ``same`` or ``finite``.

    For ``same``, ``equivalent(valid_arguments)`` gives the float input the result must equal."""

    label: str
    argument: str
    make: Callable
    expect: str
    equivalent: Callable = None


def valid_arguments(dtype="float64"):
    """Valid arguments for every function: a small tanh network, a batch, a direction and training settings."""
    net = Network.random(SIZES, "tanh", "mse", seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((5, SIZES[0])), rng.standard_normal((5, SIZES[-1]))
    return {
        "net": net,
        "X": X,
        "Y": Y,
        "v": rng.standard_normal(net.n_params),
        "l": 0,
        "m": 1,
        "lr": 0.1,
        "steps": 3,
        "batch_size": 2,
        "seed": 0,
    }


# The engine contract and train: the arguments each takes, in order.
SIGNATURES = {
    "forward": ("net", "X"),
    "loss": ("net", "X", "Y"),
    "gradient": ("net", "X", "Y"),
    "per_sample_gradients": ("net", "X", "Y"),
    "hvp": ("net", "X", "Y", "v"),
    "hessian_block": ("net", "X", "Y", "l", "m"),
    "hessian": ("net", "X", "Y"),
    "train": ("net", "X", "Y", "lr", "steps", "batch_size", "seed"),
}


def _ragged(a):
    rows = a.tolist()
    if a.ndim == 1:
        return [rows[:2], rows[2:3]] + rows[3:]
    rows[-1] = rows[-1][:-1]
    return rows


def _integers(a):
    return np.round(3 * a).astype(np.int64)


def _array_variants(name):
    """What can go wrong with an array argument ``name`` (``X``, ``Y`` or ``v``)."""
    return [
        Variant("object", name, lambda a: object(), "error"),
        Variant("string", name, lambda a: "1.0", "error"),
        Variant("string array", name, lambda a: a[name].astype(str), "error"),
        Variant("bytes", name, lambda a: b"\x00" * 8, "error"),
        Variant("None", name, lambda a: None, "error"),
        Variant("complex, zero imaginary part", name, lambda a: a[name] + 0j, "error"),
        Variant("complex", name, lambda a: a[name] + 1j, "error"),
        Variant("bool array", name, lambda a: a[name] > 0, "error"),
        Variant("ragged list", name, lambda a: _ragged(a[name]), "error"),
        Variant("object array", name, lambda a: a[name].astype(object), "error"),
        Variant(
            "nan",
            name,
            lambda a: np.where(np.arange(a[name].size).reshape(a[name].shape) == 1, np.nan, a[name]),
            "error",
        ),
        Variant("3-d", name, lambda a: a[name][None], "error"),
        Variant("list", name, lambda a: a[name].tolist(), "same", lambda a: a[name]),
        Variant(
            "integer array", name, lambda a: _integers(a[name]), "same", lambda a: _integers(a[name]).astype(float)
        ),
        Variant(
            "float32 array",
            name,
            lambda a: a[name].astype(np.float32),
            "same",
            lambda a: a[name].astype(np.float32).astype(float),
        ),
        Variant("non-contiguous", name, lambda a: np.asfortranarray(a[name]), "same", lambda a: a[name]),
    ]


def _huge_x():
    return [
        Variant("1e300 into float32", "X", lambda a: np.full_like(a["X"], 1e300), "error"),
        Variant("1e308", "X", lambda a: np.full_like(a["X"], 1e308) * np.sign(a["X"]), "finite"),
        Variant("1e200", "X", lambda a: a["X"] * 1e200, "finite"),
    ]


def _scalar_variants(name, bad):
    return [
        Variant(repr(value) if not callable(value) else value.__name__, name, (lambda v: lambda a: v)(value), "error")
        for value in bad
    ]


_NOT_A_NETWORK = [None, "net", {"weights": []}, object(), 3]

VARIANTS = (
    _scalar_variants("net", _NOT_A_NETWORK)
    + _array_variants("X")
    + _array_variants("Y")
    + _array_variants("v")
    + _huge_x()
    + _scalar_variants("l", [None, 1.0, "0", True, -1, 7, 0.5, [0]])
    + _scalar_variants("m", [None, 1.0, "1", False, 2])
    + _scalar_variants("lr", [None, float("nan"), float("inf"), -0.1, 0, "0.1", 1j, True])
    + _scalar_variants("steps", [None, -1, 2.5, "3", float("nan"), True])
    + _scalar_variants("batch_size", [0, -1, 2.5, "2", float("inf"), True])
    + _scalar_variants("seed", [None, -1, 1.5, "0", True, -(2**70)])
)


def applicable(function, variant):
    """Whether ``variant`` changes an argument that ``function`` takes."""
    return variant.argument in SIGNATURES[function]


def float32_arguments_for(variant):
    """``1e300 into float32`` needs a float32 network: the value is finite in float64 and Inf once cast."""
    return "float32" if variant.label == "1e300 into float32" else "float64"


def arguments(function, variant, dtype="float64"):
    """``(valid argument tuple, malformed argument tuple, equivalent argument tuple or None)`` for a call."""
    valid = valid_arguments(dtype)
    names = SIGNATURES[function]
    bad = dict(valid, **{variant.argument: variant.make(valid)})
    same = dict(valid, **{variant.argument: variant.equivalent(valid)}) if variant.equivalent else None
    pick = lambda values: tuple(values[n] for n in names)  # noqa: E731
    return pick(valid), pick(bad), pick(same) if same else None


def snapshot(values):
    """Copies of every array in ``values`` (to check afterwards that the call left its inputs alone)."""
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) else None for v in values]


def unchanged(values, copies):
    """Whether every array in ``values`` still equals its copy (same dtype, same entries, NaN equal to NaN)."""

    def same(v, c):
        numeric = np.issubdtype(c.dtype, np.number)
        return v.dtype == c.dtype and np.array_equal(v, c, equal_nan=numeric)

    return all(c is None or same(v, c) for v, c in zip(values, copies))


def result_arrays(result):
    """The arrays of a result: ``train`` returns ``(network, losses)``."""
    if isinstance(result, tuple) and result and isinstance(result[0], Network):
        return [result[0].to_vector(), np.asarray(result[1], dtype=float)]
    if isinstance(result, Network):
        return [result.to_vector()]
    if hasattr(result, "lambda_max"):  # a Diagnosis
        return [np.array([result.lambda_max, result.loss])]
    try:
        return [np.asarray(result, dtype=float)]
    except (TypeError, ValueError):
        return []


def _net():
    return valid_arguments()["net"]


def _data():
    a = valid_arguments()
    return a["net"], a["X"], a["Y"]


def _transposed_first_weights():
    net = _net()
    return [net.weights[0].T, net.weights[1]], list(net.biases)


def extra_calls(manual):
    """Malformed calls of the functions outside the engine contract: ``(label, thunk, expect)``."""
    from manual import symmetry
    from manual._diagnose import largest_eigenvalue

    net, X, Y = _data()
    w, b, acts = list(net.weights), list(net.biases), list(net.activations)
    fd, diag = manual.finite_difference_gradient, manual.diagnose
    calls = [
        ("fd eps=0", lambda: fd(net, X, Y, eps=0.0)),
        ("fd eps=1e-300 (below the dtype's resolution)", lambda: fd(net, X, Y, eps=1e-300)),
        ("fd eps=1e-17", lambda: fd(net, X, Y, eps=1e-17)),
        ("fd eps=1e10", lambda: fd(net, X, Y, eps=1e10)),
        ("fd eps=nan", lambda: fd(net, X, Y, eps=float("nan"))),
        ("fd eps='1e-6'", lambda: fd(net, X, Y, eps="1e-6")),
        ("fd float32 eps=1e-9", lambda: fd(net.astype("float32"), X, Y, eps=1e-9)),
        ("fd net=None", lambda: fd(None, X, Y)),
        ("diagnose max_iter=0", lambda: diag(net, X, Y, max_iter=0)),
        ("diagnose max_iter=2.5", lambda: diag(net, X, Y, max_iter=2.5)),
        ("diagnose tol=-1", lambda: diag(net, X, Y, tol=-1)),
        ("diagnose tol=nan", lambda: diag(net, X, Y, tol=float("nan"))),
        ("diagnose tol='small'", lambda: diag(net, X, Y, tol="small")),
        ("diagnose lr=nan", lambda: diag(net, X, Y, lr=float("nan"))),
        ("diagnose net='net'", lambda: diag("net", X, Y)),
        ("diagnose X=None", lambda: diag(net, None, Y)),
        ("diagnose X complex", lambda: diag(net, X + 0j, Y)),
        ("largest_eigenvalue seed=-1", lambda: largest_eigenvalue(net, X, Y, seed=-1)),
        ("largest_eigenvalue block=0", lambda: largest_eigenvalue(net, X, Y, block=0)),
        ("symmetry float perm", lambda: symmetry.permute_units(net, 0, [1.0, 0.0, 2.0, 3.0])),
        ("symmetry bool perm", lambda: symmetry.permute_units(net, 0, [True, False, True, True])),
        ("symmetry string perm", lambda: symmetry.permute_units(net, 0, "0123")),
        ("symmetry perm None", lambda: symmetry.permute_units(net, 0, None)),
        ("symmetry ragged perm", lambda: symmetry.permute_units(net, 0, [[0, 1], [2]])),
        ("symmetry signs bool", lambda: symmetry.transform(net, 0, [True, False, True, True], [0, 1, 2, 3])),
        ("symmetry signs float", lambda: symmetry.transform(net, 0, [1.0, -1.0, 1.0, 1.0], [0, 1, 2, 3])),
        ("symmetry signs 2", lambda: symmetry.transform(net, 0, [2, 1, 1, 1], [0, 1, 2, 3])),
        ("symmetry signs None", lambda: symmetry.transform(net, 0, None, [0, 1, 2, 3])),
        ("symmetry orbit signs='yes'", lambda: next(symmetry.orbit(net, 0, signs="yes"))),
        ("symmetry orbit_size signs=2", lambda: symmetry.orbit_size(net, 0, signs=2)),
        ("symmetry flip units float", lambda: symmetry.flip_signs(net, 0, 1.0)),
        ("symmetry flip units bool", lambda: symmetry.flip_signs(net, 0, True)),
        ("symmetry layer float", lambda: symmetry.permute_units(net, 0.0, [0, 1, 2, 3])),
        ("symmetry net None", lambda: symmetry.permute_units(None, 0, [0, 1, 2, 3])),
        ("symmetry transform_matrix net None", lambda: symmetry.transform_matrix(None, 0, [1] * 4, [0, 1, 2, 3])),
        ("symmetry degeneracies atol=nan", lambda: symmetry.degeneracies(net, 0, atol=float("nan"))),
        ("symmetry degeneracies atol=-1", lambda: symmetry.degeneracies(net, 0, atol=-1)),
        ("collapse_linear None", lambda: manual.collapse_linear(None)),
        ("collapse_linear dict", lambda: manual.collapse_linear({"weights": w})),
        ("from_arrays weights None", lambda: Network.from_arrays(None, b, acts, "mse")),
        ("from_arrays biases None", lambda: Network.from_arrays(w, None, acts, "mse")),
        ("from_arrays weights string", lambda: Network.from_arrays("W", b, acts, "mse")),
        ("from_arrays weights ragged", lambda: Network.from_arrays([[[1, 2], [3]]] + w[1:], b, acts, "mse")),
        ("from_arrays complex weights", lambda: Network.from_arrays([w[0] + 0j, w[1]], b, acts, "mse")),
        ("from_arrays bool weights", lambda: Network.from_arrays([w[0] > 0, w[1]], b, acts, "mse")),
        ("from_arrays object weights", lambda: Network.from_arrays([object(), w[1]], b, acts, "mse")),
        (
            "from_arrays 1e300 into float32",
            lambda: Network.from_arrays([w[0] * 1e300, w[1]], b, acts, "mse", dtype="float32"),
        ),
        ("from_arrays transposed W_0", lambda: Network.from_arrays(*_transposed_first_weights(), acts, "mse")),
        ("from_arrays activations None", lambda: Network.from_arrays(w, b, None, "mse")),
        ("from_arrays activations 3", lambda: Network.from_arrays(w, b, 3, "mse")),
        ("from_arrays loss None", lambda: Network.from_arrays(w, b, acts, None)),
        ("from_arrays loss list", lambda: Network.from_arrays(w, b, acts, ["mse"])),
        ("from_arrays dtype None", lambda: Network.from_arrays(w, b, acts, "mse", dtype=None)),
        ("from_arrays dtype int", lambda: Network.from_arrays(w, b, acts, "mse", dtype=int)),
        ("from_arrays dtype float16", lambda: Network.from_arrays(w, b, acts, "mse", dtype="float16")),
        ("random seed None", lambda: Network.random(SIZES, seed=None)),
        ("random seed -1", lambda: Network.random(SIZES, seed=-1)),
        ("random seed 1.5", lambda: Network.random(SIZES, seed=1.5)),
        ("random seed '0'", lambda: Network.random(SIZES, seed="0")),
        ("random seed True", lambda: Network.random(SIZES, seed=True)),
        ("random sizes None", lambda: Network.random(None)),
        ("random sizes string", lambda: Network.random("34")),
        ("random sizes 3", lambda: Network.random(3)),
        ("random weight_scale 1e300 float32", lambda: Network.random([30, 30, 1], weight_scale=1e300, dtype="float32")),
        ("random weight_scale '1'", lambda: Network.random(SIZES, weight_scale="1")),
        ("from_vector None", lambda: net.from_vector(None)),
        ("from_vector complex", lambda: net.from_vector(net.to_vector() + 0j)),
        ("from_vector bool", lambda: net.from_vector(net.to_vector() > 0)),
        ("from_vector string", lambda: net.from_vector("abc")),
        ("from_vector nan", lambda: net.from_vector(net.to_vector() * np.nan)),
        ("astype None", lambda: net.astype(None)),
        ("astype int", lambda: net.astype("int64")),
        ("astype float32 of huge weights", lambda: Network.random([3, 2], weight_scale=1e300).astype("float32")),
    ]
    return [(label, thunk, "error") for label, thunk in calls]


def mutation_attempts(net):
    """Ways to change a ``Network`` after construction; each must raise (and leave the network as it was)."""

    def flip_and_write():
        w = net.weights[0]
        w.flags.writeable = True
        w[0, 0] = 99.0

    def write_bias():
        net.biases[0][0] = 99.0

    def set_attribute():
        net._weights = ()

    def replace_loss():
        net.loss = "cross_entropy"

    def write_base():
        base = net.weights[0]
        while getattr(base, "base", None) is not None and isinstance(base.base, np.ndarray):
            base = base.base
        base.flags.writeable = True
        base.reshape(-1)[0] = 99.0

    def write_vector():
        theta = net.to_vector()
        theta[0] = 99.0  # a copy: allowed, must not reach the network
        raise AssertionError("not an attempt on the network")  # counted as refused; the check is the values

    return {
        "flip flags.writeable then write": flip_and_write,
        "write a bias": write_bias,
        "set a private attribute": set_attribute,
        "set a property": replace_loss,
        "re-flag the base array": write_base,
        "write to_vector's copy": write_vector,
    }


def outcome(thunk, expect, equivalent=None, inputs=()):
    """``(verdict, detail)`` of one call: ``documented`` (an error of the suite with a message), ``ok``, ``raw``
    (any other exception), ``silent non-finite``, ``silently accepted``, ``wrong result`` or ``mutated input``."""
    copies = snapshot(inputs)
    try:
        with np.errstate(all="ignore"):
            result = thunk()
    except XvalError as exc:
        verdict = ("documented", str(exc)) if str(exc) else ("raw", "an XvalError with no message")
    except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
        verdict = ("raw", f"{type(exc).__name__}: {exc}"[:200])
    else:
        arrays = result_arrays(result)
        if not all(np.all(np.isfinite(a)) for a in arrays):
            verdict = ("silent non-finite", "")
        elif expect == "error":
            verdict = ("silently accepted", "")
        elif expect == "same" and equivalent is not None:
            with np.errstate(all="ignore"):
                expected = result_arrays(equivalent())
            ok = all(np.allclose(a, e, rtol=1e-6, atol=1e-9) for a, e in zip(arrays, expected))
            verdict = ("ok", "") if ok else ("wrong result", "")
        else:
            verdict = ("ok", "")
    if not unchanged(inputs, copies):
        verdict = ("mutated input", verdict[1])
    return verdict
