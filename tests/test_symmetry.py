"""Problem 4: weight-space symmetry. Sign flips and permutations of a hidden layer's N units give 2^N N!
parameter vectors with the same network function; gradients and Hessians move with them."""

import itertools
import math

import numpy as np
import pytest

import manual
from manual import symmetry
from xval.compare import assert_close

SIGNED = ["tanh", "sigmoid", "identity"]


def network(hidden, activation, sizes=None, seed=0, loss="mse"):
    """A network whose hidden layer 0 has ``hidden`` units (or the given ``sizes``), with data."""
    sizes = sizes or [3, hidden, 2]
    net = manual.Network.random(sizes, activation, loss, seed=seed)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((7, sizes[0]))
    Y = rng.standard_normal((7, sizes[-1]))
    return net, X, Y


def with_units(net, layer, rows, biases, columns):
    """``net`` with some units of ``layer`` replaced: ``rows[j]``, ``biases[j]``, ``columns[j]`` for unit j."""
    weights, bias = [np.array(w) for w in net.weights], [np.array(b) for b in net.biases]
    for j in rows:
        weights[layer][j], bias[layer][j], weights[layer + 1][:, j] = rows[j], biases[j], columns[j]
    return manual.Network.from_arrays(weights, bias, net.activations, net.loss)


def random_element(width, rng):
    return rng.choice([-1, 1], size=width), rng.permutation(width)


# ---- the function is unchanged ------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", SIGNED)
def test_the_whole_orbit_computes_the_same_function(activation, hidden):
    net, X, Y = network(hidden, activation)
    reference, members = manual.forward(net, X), 0
    for member in symmetry.orbit(net, 0):
        assert_close(manual.forward(member, X), reference, 1e-14, f"orbit member {members}")
        members += 1
    assert members == symmetry.orbit_size(net, 0) == 2**hidden * math.factorial(hidden)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_orbit_of_a_middle_layer_keeps_the_function_and_loss(activation):
    net, X, Y = network(0, activation, sizes=[3, 4, 3, 2], seed=5)
    outputs, loss = manual.forward(net, X), manual.loss(net, X, Y)
    members = list(symmetry.orbit(net, 1))
    assert len(members) == 48
    for member in members:
        assert_close(manual.forward(member, X), outputs, 1e-14, "outputs")
        assert manual.loss(member, X, Y) == pytest.approx(loss, rel=1e-14)


@pytest.mark.parametrize("hidden", [6, 10])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_random_members_of_a_large_orbit_compute_the_same_function(activation, hidden):
    net, X, _ = network(hidden, activation, seed=hidden)
    rng = np.random.default_rng(hidden)
    reference = manual.forward(net, X)
    for _ in range(25):
        signs, perm = random_element(hidden, rng)
        member = symmetry.transform(net, 0, signs, perm)
        assert not np.array_equal(member.to_vector(), net.to_vector())
        assert_close(manual.forward(member, X), reference, 1e-14, f"signs {signs}, perm {perm}")


def test_flip_and_permute_do_what_they_say():
    net, _, _ = network(3, "sigmoid", seed=2)
    W, b, V, c = net.weights[0], net.biases[0], net.weights[1], net.biases[1]
    flipped = symmetry.flip_signs(net, 0, [0, 2])
    np.testing.assert_array_equal(flipped.weights[0], W * np.array([[-1], [1], [-1]]))
    np.testing.assert_array_equal(flipped.biases[0], b * np.array([-1, 1, -1]))
    np.testing.assert_array_equal(flipped.weights[1], V * np.array([-1, 1, -1]))
    np.testing.assert_allclose(
        flipped.biases[1], c + V[:, 0] + V[:, 2], rtol=0, atol=1e-15
    )  # sigmoid(-a) = 1 - sigmoid(a)
    tanh_net, _, _ = network(3, "tanh", seed=2)
    np.testing.assert_array_equal(symmetry.flip_signs(tanh_net, 0, 1).biases[1], tanh_net.biases[1])  # odd: no shift
    moved = symmetry.permute_units(net, 0, [2, 0, 1])
    np.testing.assert_array_equal(moved.weights[0], W[[2, 0, 1]])
    np.testing.assert_array_equal(moved.weights[1], V[:, [2, 0, 1]])
    np.testing.assert_array_equal(moved.biases[1], c)


# ---- counting: 2^N N! distinct vectors, fewer exactly when degenerate -----------------------------
def distinct(networks):
    """The number of different parameter vectors (``+ 0.0`` turns the -0.0 of a flipped zero into 0.0)."""
    return len({(member.to_vector() + 0.0).tobytes() for member in networks})


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("hidden", [2, 3, 4])
def test_a_non_degenerate_orbit_has_exactly_2_to_the_n_times_n_factorial_members(activation, hidden):
    net, _, _ = network(hidden, activation, seed=3)
    assert not symmetry.is_degenerate(net, 0) and symmetry.degeneracies(net, 0) == []
    assert distinct(symmetry.orbit(net, 0)) == 2**hidden * math.factorial(hidden)
    # the problem's count: sign flips alone give 2^N - 1 other assignments
    flips = [symmetry.flip_signs(net, 0, [j for j in range(hidden) if mask >> j & 1]) for mask in range(2**hidden)]
    assert distinct(flips) == 2**hidden


def _degenerate_cases(net):
    """(name, network, number of distinct orbit members, degenerate?) for a 3-unit hidden layer (48 elements)."""
    W, b, V = net.weights[0], net.biases[0], net.weights[1]
    zero_row, zero_column = np.zeros(W.shape[1]), np.zeros(V.shape[0])
    return [
        # flipping an all-zero unit changes nothing: each member is hit twice
        ("zero unit", with_units(net, 0, {1: zero_row}, {1: 0.0}, {1: zero_column}), 24, True),
        # swapping two identical units changes nothing
        ("identical units", with_units(net, 0, {2: W[0]}, {2: b[0]}, {2: V[:, 0]}), 24, True),
        # flipping two opposite units and swapping them changes nothing
        ("opposite units", with_units(net, 0, {2: -W[0]}, {2: -b[0]}, {2: -V[:, 0]}), 24, True),
        # both at once: the stabiliser has 4 elements
        (
            "zero unit and identical units",
            with_units(net, 0, {1: zero_row, 2: W[0]}, {1: 0.0, 2: b[0]}, {1: zero_column, 2: V[:, 0]}),
            12,
            True,
        ),
        # zero incoming weights and bias alone: the unit is constant, but its flip still moves its outgoing weights
        ("constant unit", with_units(net, 0, {1: zero_row}, {1: 0.0}, {1: V[:, 1]}), 48, False),
        ("unused unit", with_units(net, 0, {1: W[1]}, {1: b[1]}, {1: zero_column}), 48, False),
    ]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize(
    "case", range(6), ids=["zero-unit", "identical", "opposite", "zero-and-identical", "constant-unit", "unused-unit"]
)
def test_degenerate_orbits_have_fewer_members(activation, case):
    base, X, _ = network(3, activation, seed=4)
    name, net, expected, degenerate = _degenerate_cases(base)[case]
    assert symmetry.is_degenerate(net, 0) is degenerate, (name, symmetry.degeneracies(net, 0))
    members = list(symmetry.orbit(net, 0))
    assert len(members) == 48
    assert distinct(members) == expected, name
    for member in members[::7]:
        assert_close(manual.forward(member, X), manual.forward(net, X), 1e-14, name)


# ---- gradients and Hessians move with the parameters -----------------------------------------------
def moved_networks(activation, seed, flipped, dtype):
    """``(net, X, Y, moves)`` for a 3-4-3-2 network in ``dtype``: per hidden layer, ``(J, moved)`` for a random signed
    permutation of its units with unit ``flipped`` negated (at least one flip), ``moved.to_vector() = J theta``.

    The moves are made, and ``moved.to_vector() = J theta`` checked exactly, in float64; only then are the networks
    rounded to ``dtype`` (so in float32, ``moved`` is ``J theta`` up to rounding)."""
    net, X, Y = network(4, activation, sizes=[3, 4, 3, 2], seed=seed)
    rng = np.random.default_rng(seed)
    moves = []
    for layer in (0, 1):
        signs, perm = random_element(net.sizes[layer + 1], rng)
        signs[flipped] = -1
        J, moved = symmetry.transform_matrix(net, layer, signs, perm), symmetry.transform(net, layer, signs, perm)
        np.testing.assert_array_equal(J @ net.to_vector(), moved.to_vector())
        moves.append((J, moved.astype(dtype)))
    return net.astype(dtype), X.astype(dtype), Y.astype(dtype), moves


@pytest.mark.parametrize("activation", SIGNED)
def test_gradients_transform_by_the_matching_signed_permutation(activation, any_engine, dtype, rtol):
    name, engine = any_engine
    net, X, Y, moves = moved_networks(activation, seed=6, flipped=0, dtype=dtype)
    for J, moved in moves:
        g, g_moved = engine.gradient(net, X, Y), engine.gradient(moved, X, Y)
        # E(J theta) = E(theta) for all theta, so grad E(theta) = J^T grad E(J theta)
        assert_close(J.T @ g_moved, g, rtol, f"{name}: J^T g(J theta) vs g(theta)")
        if activation != "sigmoid":
            # odd activations: J is a signed permutation matrix, orthogonal, so g(J theta) = J g(theta)
            assert np.all(np.sum(J != 0, axis=1) == 1) and set(np.unique(J)) <= {-1.0, 0.0, 1.0}
            np.testing.assert_array_equal(J @ J.T, np.eye(net.n_params))
            assert_close(g_moved, J @ g, rtol, f"{name}: g(J theta) vs J g(theta)")


@pytest.mark.parametrize("activation", SIGNED)
def test_hessians_transform_by_the_matching_signed_permutation(activation, any_engine, dtype, rtol):
    name, engine = any_engine
    net, X, Y, moves = moved_networks(activation, seed=7, flipped=-1, dtype=dtype)
    for J, moved in moves:
        H, H_moved = engine.hessian(net, X, Y), engine.hessian(moved, X, Y)
        # second derivative of E(J theta) = E(theta): H(theta) = J^T H(J theta) J (J is linear)
        assert_close(J.T @ H_moved @ J, H, rtol, f"{name}: J^T H(J theta) J vs H(theta)")
        if activation != "sigmoid":
            assert_close(H_moved, J @ H @ J.T, rtol, f"{name}: H(J theta) vs J H(theta) J^T")


def test_the_manual_gradient_of_a_moved_network_matches_the_reference(engine, dtype, rtol, record_error):
    name, module = engine
    net, X, Y = network(5, "sigmoid", sizes=[3, 5, 4, 2], seed=8, loss="mse")
    moved = symmetry.transform(net, 0, np.array([-1, 1, -1, 1, -1]), np.array([4, 2, 0, 3, 1])).astype(dtype)
    X, Y = X.astype(dtype), Y.astype(dtype)
    error = assert_close(
        manual.gradient(moved, X, Y),
        module.gradient(moved, X, Y),
        rtol,
        f"gradient of a moved network, manual vs {name}",
    )
    record_error("gradient of a moved network", name, "sigmoid 3x5x4x2", error)


# ---- activations without sign symmetry, and bad arguments ----------------------------------------
@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_no_sign_flips_without_a_sign_symmetry_but_permutations_still_work(activation):
    net, X, _ = network(3, activation, seed=9)
    with pytest.raises(symmetry.NoSignSymmetryError, match=f"layer 0 uses '{activation}'"):
        symmetry.flip_signs(net, 0, 1)
    with pytest.raises(symmetry.NoSignSymmetryError, match="permute_units"):
        next(symmetry.orbit(net, 0))
    members = list(symmetry.orbit(net, 0, signs=False))
    assert len(members) == symmetry.orbit_size(net, 0, signs=False) == 6 and distinct(members) == 6
    for member in members:
        assert_close(manual.forward(member, X), manual.forward(net, X), 1e-14, activation)


def test_bad_arguments_say_what_is_valid():
    net, _, _ = network(3, "tanh", sizes=[3, 3, 4, 2])
    with pytest.raises(manual.LayerIndexError, match=r"hidden layers .* are 0 \.\. 1"):
        symmetry.flip_signs(net, 2, 0)  # the output layer has no outgoing weights
    with pytest.raises(manual.ShapeError, match=r"permutation of 0 \.\. 2"):
        symmetry.permute_units(net, 0, [0, 0, 1])
    with pytest.raises(manual.ShapeError, match=r"unit indices in 0 \.\. 3"):
        symmetry.flip_signs(net, 1, [4])
    with pytest.raises(manual.ShapeError, match=r"\+1 or -1"):
        symmetry.transform(net, 0, [1, 0, 1], [0, 1, 2])
    with pytest.raises(manual.LayerIndexError, match="no hidden layer"):
        symmetry.orbit_size(manual.Network.random([3, 2], "identity"), 0)


def test_orbit_is_lazy():
    net, _, _ = network(0, "tanh", sizes=[2, 12, 1])  # 2^12 12! ~ 2e12 members: only a generator can hold them
    first = list(itertools.islice(symmetry.orbit(net, 0), 3))
    np.testing.assert_array_equal(first[0].to_vector(), net.to_vector())
    assert symmetry.orbit_size(net, 0) == 2**12 * math.factorial(12)
