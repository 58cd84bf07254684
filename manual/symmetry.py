"""Problem 4: weight-space symmetry of a hidden layer.

Hidden layer ``l`` has ``N = n_{l+1}`` units; unit ``j`` has incoming weights ``W_l[j, :]``, bias ``b_l[j]``
and outgoing weights ``W_{l+1}[:, j]``. Two kinds of change leave the network function unchanged:

- Permuting the units (any activation): unit ``i`` of the new layer is unit ``perm[i]`` of the old one.
- Flipping the sign of unit ``j`` when ``f(-a) = c - f(a)``: negate its incoming weights and bias, so that
  its output becomes ``c - z_j``, and negate its outgoing weights, so that the next layer receives
  ``-W_{l+1}[:, j] (c - z_j) = W_{l+1}[:, j] z_j - c W_{l+1}[:, j]``; adding ``c W_{l+1}[:, j]`` to the next
  bias restores it. ``tanh`` and ``identity`` are odd (``c = 0``); ``sigmoid(-a) = 1 - sigmoid(a)`` (``c = 1``).

Together they form the group of signed permutations, ``2^N N!`` elements. Each maps the parameter vector
linearly, ``theta' = J theta``: for odd activations ``J`` is a signed permutation matrix, so gradients
map by ``J`` and Hessians by ``J H J^T``; for sigmoid ``J`` also adds outgoing weights to the next bias.
"""

import itertools
import math

import numpy as np

from xval import memory
from xval.checks import check_network, real_array
from xval.errors import ArgumentError, LayerIndexError, ShapeError, XvalError, check_flag, check_non_negative
from xval.network import Network

from .activations import ACTIVATIONS, get_activation


def sign_flip_names():
    """The activations with a sign symmetry ``f(-a) = c - f(a)`` (their ``Activation.sign_shift`` is ``c``)."""
    return sorted(name for name, act in ACTIVATIONS.items() if act.sign_shift is not None)


class NoSignSymmetryError(XvalError, ValueError):
    """A sign flip asked of an activation with no ``f(-a) = c - f(a)`` identity (relu, softplus)."""


def _check_hidden_layer(net, layer):
    check_network(net)
    hidden = net.n_layers - 1
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < hidden:
        valid = f"0 .. {hidden - 1}" if hidden else "none: this network has no hidden layer"
        raise LayerIndexError(
            f"layer {layer!r} is not a hidden layer of {net}; hidden layers (those with outgoing weights) are {valid}"
        )
    return int(layer)


def _sign_shift(net, layer):
    name = net.activations[layer]
    shift = get_activation(name).sign_shift
    if shift is None:
        raise NoSignSymmetryError(
            f"layer {layer} uses {name!r}, which has no sign-flip symmetry "
            f"({name}(-a) is not c - {name}(a)); sign flips "
            f"exist for: {', '.join(sign_flip_names())}. Permutations (permute_units, orbit(..., signs=False)) "
            "work for every activation"
        )
    return shift


def _integers(name, value, width, meaning):
    """``value`` as an integer array, refusing floats (``1.0`` is not an index), booleans and non-numbers."""
    array = real_array(name, value, f"{width} integers ({meaning})")
    if array.dtype.kind not in "iu":
        raise ArgumentError(
            f"{name} has dtype {array.dtype}, but it must hold integers ({meaning}); pass e.g. "
            f"np.asarray({name}, dtype=int) if the values are whole numbers"
        )
    return array


def _check_signs(signs, width):
    signs = _integers("signs", signs, width, "+1 or -1 per unit")
    if signs.shape != (width,) or not np.all(np.isin(signs, (-1, 1))):
        raise ShapeError(f"signs must be {width} entries of +1 or -1 (one per unit), got {signs.tolist()!r}")
    return signs.astype(np.int64)


def _check_perm(perm, width):
    perm = _integers("perm", perm, width, f"a permutation of 0 .. {width - 1}")
    if perm.shape != (width,) or not np.array_equal(np.sort(perm), np.arange(width)):
        raise ShapeError(
            f"perm must be a permutation of 0 .. {width - 1} (new unit i is old unit perm[i]), got {perm.tolist()!r}"
        )
    return perm.astype(np.int64)


def _apply(weights, biases, layer, signs, perm, shift):
    """Flip then permute the units of ``layer`` in lists of arrays; trailing axes beyond a layer's shape ride along."""
    weights, biases = list(weights), list(biases)
    W, b, V, c = weights[layer], biases[layer], weights[layer + 1], biases[layer + 1]
    width = W.shape[0]
    if shift and np.any(signs < 0):
        c = c + shift * np.sum(V[:, signs < 0], axis=1)  # the next bias absorbs c * W_{l+1}[:, j]
    W = W * signs.reshape((width,) + (1,) * (W.ndim - 1))  # multiplying by -1 or 1 is exact
    b = b * signs.reshape((width,) + (1,) * (b.ndim - 1))
    V = V * signs.reshape((1, width) + (1,) * (V.ndim - 2))
    weights[layer], biases[layer], weights[layer + 1], biases[layer + 1] = W[perm], b[perm], V[:, perm], c
    return weights, biases


def transform(net, layer, signs, perm):
    """``net`` with the units of hidden ``layer`` sign-flipped (where ``signs`` is -1), then permuted by ``perm``.

    New unit ``i`` is old unit ``perm[i]``, flipped when ``signs[perm[i]] == -1``.
    """
    layer = _check_hidden_layer(net, layer)
    width = net.sizes[layer + 1]
    signs, perm = _check_signs(signs, width), _check_perm(perm, width)
    shift = _sign_shift(net, layer) if np.any(signs < 0) else 0.0
    weights, biases = _apply(net.weights, net.biases, layer, signs, perm, shift)
    return Network.from_arrays(weights, biases, net.activations, net.loss, dtype=net.dtype)


def flip_signs(net, layer, units):
    """Flip the sign of ``units`` (an int or a list of ints) of hidden ``layer``; the function is unchanged.

    tanh/identity: negate incoming weights, bias and outgoing weights. sigmoid: the same, and add the unit's
    outgoing weights to the next layer's bias. Other activations raise ``NoSignSymmetryError``.
    """
    layer = _check_hidden_layer(net, layer)
    width = net.sizes[layer + 1]
    units = np.atleast_1d(np.asarray(units))
    if units.size == 0:
        units = units.astype(np.int64)  # no unit to flip: the identity
    if units.ndim != 1 or not np.issubdtype(units.dtype, np.integer) or np.any((units < 0) | (units >= width)):
        raise ShapeError(f"units must be unit indices in 0 .. {width - 1} of layer {layer}, got {units.tolist()!r}")
    signs = np.ones(width, dtype=np.int64)
    signs[units] = -1
    return transform(net, layer, signs, np.arange(width))


def permute_units(net, layer, perm):
    """Reorder the units of hidden ``layer``: new unit ``i`` is old unit ``perm[i]`` (any activation)."""
    layer = _check_hidden_layer(net, layer)
    return transform(net, layer, np.ones(net.sizes[layer + 1], dtype=np.int64), perm)


def transform_matrix(net, layer, signs, perm):
    """``J``, ``(P, P)``, with ``transform(net, layer, signs, perm).to_vector() == J @ net.to_vector()``.

    Built by pushing the identity basis through the same code path as ``transform``. For tanh/identity
    (or ``signs`` all +1) ``J`` is a signed permutation matrix.
    """
    layer = _check_hidden_layer(net, layer)
    width = net.sizes[layer + 1]
    signs, perm = _check_signs(signs, width), _check_perm(perm, width)
    shift = _sign_shift(net, layer) if np.any(signs < 0) else 0.0
    memory.check(
        transform_matrix_bytes(net, layer),
        f"symmetry.transform_matrix (a {net.n_params} x {net.n_params} array)",
        "the identity basis, the rows, the result and copies of the two layers' rows",
    )
    basis = np.eye(net.n_params)
    weights, biases = [], []
    for sl, w in zip(net.param_slices, net.weights):
        chunk = basis[sl]
        weights.append(chunk[: w.size].reshape(w.shape + (net.n_params,)))
        biases.append(chunk[w.size :])
    weights, biases = _apply(weights, biases, layer, signs, perm, shift)
    rows = [np.concatenate([w.reshape(-1, net.n_params), b]) for w, b in zip(weights, biases)]
    return np.concatenate(rows)


def transform_matrix_bytes(net, layer):
    """Peak bytes of ``transform_matrix``, all float64: the ``(P, P)`` identity basis, the per-layer rows and their
    concatenation (``P`` rows each), plus two copies (the sign flip, then the permutation) of the rows of layers
    ``layer`` and ``layer + 1``."""
    P = net.n_params
    moved = net.layer_param_counts[layer] + net.layer_param_counts[layer + 1]
    return 8 * P * (3 * P + 2 * moved)


def orbit_size(net, layer, signs=True):
    """The number of group elements ``orbit`` walks: ``2^N N!`` (``N!`` with ``signs=False``)."""
    signs = check_flag("signs", signs)
    width = net.sizes[_check_hidden_layer(net, layer) + 1]
    return (2**width if signs else 1) * math.factorial(width)


def orbit(net, layer, signs=True):
    """Lazily yield the ``2^N N!`` networks ``transform(net, layer, s, perm)``, the identity first.

    ``signs=False`` walks the ``N!`` permutations only (for relu/softplus). Members coincide exactly when
    ``is_degenerate(net, layer)``. The arguments are checked when it is called, before the first member.
    """
    layer = _check_hidden_layer(net, layer)
    signs = check_flag("signs", signs)
    width = net.sizes[layer + 1]
    if signs:
        _sign_shift(net, layer)
    return _members(net, layer, signs, width)


def _members(net, layer, signs, width):
    sign_patterns = list(itertools.product((1, -1), repeat=width)) if signs else [(1,) * width]
    for perm in itertools.permutations(range(width)):
        for pattern in sign_patterns:
            yield transform(net, layer, np.array(pattern), np.array(perm))


def degeneracies(net, layer, atol=0.0):
    """Why members of the orbit of hidden ``layer`` coincide: a list of sentences, empty when none do.

    A unit is the vector ``u_j = (W_l[j, :], b_l[j], W_{l+1}[:, j])``. A non-identity signed permutation
    maps ``theta`` to itself exactly when some ``u_j = 0`` (flipping it changes nothing) or two units have
    ``u_i = u_j`` (swapping them changes nothing) or, with sign flips, ``u_i = -u_j`` (flip both and swap).
    A unit with zero incoming weights and bias alone is not enough: it outputs a constant, so its outgoing
    weights are free (a continuum of equivalent networks), but its sign flip still moves ``theta``.
    """
    layer = _check_hidden_layer(net, layer)
    check_non_negative("atol", atol, "pass the largest difference that still counts as equal, e.g. atol=0.0 (exact)")
    units = np.concatenate([net.weights[layer], net.biases[layer][:, None], net.weights[layer + 1].T], axis=1)
    has_signs = get_activation(net.activations[layer]).sign_shift is not None
    found = []
    for j, u in enumerate(units):
        if has_signs and np.all(np.abs(u) <= atol):
            found.append(
                f"unit {j} has zero incoming weights, bias and outgoing weights: flipping its sign changes nothing"
            )
    for i, j in itertools.combinations(range(len(units)), 2):
        if np.all(np.abs(units[i] - units[j]) <= atol):
            found.append(f"units {i} and {j} are identical: swapping them changes nothing")
        elif has_signs and np.all(np.abs(units[i] + units[j]) <= atol):
            found.append(f"units {i} and {j} are opposite (u_{i} = -u_{j}): flipping both and swapping changes nothing")
    return found


def is_degenerate(net, layer, atol=0.0):
    """True when some members of ``orbit(net, layer)`` coincide (the "ALMOST" of problem 4); see ``degeneracies``."""
    return bool(degeneracies(net, layer, atol))
