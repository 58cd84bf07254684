"""Conventions shared by the adapters: the network as torch modules, the suite's loss as a torch loss, and the
mappings from a library's layout and scaling to the contract's.

The suite's objective is ``E = (1/N) sum_n loss_n`` with ``loss_n = 0.5 ||f - y||^2`` (mse) or
``-sum_k y_k log softmax(f)_k`` (cross_entropy). Every adapter hands the library torch's *sum*-reduced loss
(``MSELoss(reduction="sum")`` or ``CrossEntropyLoss(reduction="sum")``), whose sample ``n`` term is
``TERM_SCALE[loss] * loss_n``; a quantity of ``E`` is the library's value divided by ``TERM_SCALE * N``, a
per-sample quantity the library's value divided by ``TERM_SCALE``. Sum reduction keeps the library's own
mean-reduction conventions (which differ between libraries, and for MSE also divide by ``n_L``) out of the way;
tests/test_peers_findings.py probes those separately.
"""

import contextlib
import importlib
import numbers
from dataclasses import dataclass

import numpy as np

from xval.checks import check_data, check_direction, check_inputs, check_layer, check_network
from xval.errors import (
    ArgumentError,
    EngineUnavailableError,
    UnsupportedError,
    UnsupportedNetworkError,  # noqa: F401
    XvalError,  # noqa: F401
    check_seed,
)


@contextlib.contextmanager
def refusals(library, what):
    """Turn the library's ``NotImplementedError`` (its way of refusing a module, loss or structure) into
    ``UnsupportedError`` naming the library and what was asked, with the library's message."""
    try:
        yield
    except NotImplementedError as exc:
        raise UnsupportedError(
            f"{library} cannot compute {what} for this network: {exc or 'NotImplementedError'}"
        ) from None


# The one install line that keeps the pinned torch: pip must not resolve the peers' own torch requirement.
INSTALL = (
    "pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch nngeometry laplace-torch "
    "hessian-eigenthings opacus pyhessian einops unfoldNd einconv linear_operator jaxtyping wadler_lindig "
    "opt-einsum torchmetrics lightning-utilities asdfghjkl"
)

# torch's sum-reduced loss term of sample n over the suite's loss_n: MSELoss sums ||f - y||^2 (no 1/2).
TERM_SCALE = {"mse": 2.0, "cross_entropy": 1.0}


def require(module, package):
    """Import ``module`` (from the pip package ``package``), or ``EngineUnavailableError`` with the install line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailableError(
            f"this adapter needs {package!r}, which cannot be imported ({exc}); install the "
            f"peers without replacing torch: {INSTALL}"
        ) from None


def torch():
    return require("torch", "torch")


@dataclass
class Setup:
    """One problem as torch objects: the model (an ``nn.Sequential`` in the network's dtype), its parameters in the
    contract's order, the data, the sum-reduced torch loss and the factor that maps the library's sums onto
    ``E``."""

    net: object
    model: object
    X: object
    Y: object
    loss_function: object
    n: int

    @property
    def params(self):
        return list(self.model.parameters())

    @property
    def term_scale(self):
        return TERM_SCALE[self.net.loss]

    @property
    def mean_scale(self):
        """Library sum over samples of torch's loss terms -> the suite's batch mean ``E``."""
        return 1.0 / (TERM_SCALE[self.net.loss] * self.n)

    def linear(self, l):
        """The ``nn.Linear`` of layer ``l``."""
        return [m for m in self.model if isinstance(m, torch().nn.Linear)][l]

    def linear_name(self, l):
        """Layer ``l``'s module name inside the ``nn.Sequential`` (``"0"``, ``"2"``, ...)."""
        names = [name for name, m in self.model.named_children() if isinstance(m, torch().nn.Linear)]
        return names[l]


def tensor(array, net):
    t = torch()
    # a copy: the suite hands engines read-only arrays, which torch will not wrap without a warning
    return t.tensor(np.array(array, copy=True), dtype=getattr(t, net.dtype.name))


def setup(net, X, Y, targets="probabilities", library="this library"):
    """The problem as torch objects. ``targets``: ``"probabilities"`` gives cross-entropy targets as the suite's
    probability rows (torch's ``CrossEntropyLoss`` takes them directly); ``"classes"`` gives class indices, for
    libraries that take nothing else (one-hot rows only: other rows are refused, naming ``library``)."""
    t = torch()
    plain_mlp(net, library)
    X, Y = check_data(net, X, Y)
    model = net.to_torch()
    if net.loss == "mse":
        loss_function = t.nn.MSELoss(reduction="sum")
        Y = tensor(Y, net)
    else:
        loss_function = t.nn.CrossEntropyLoss(reduction="sum")
        Y = t.as_tensor(class_indices(Y, library)) if targets == "classes" else tensor(Y, net)
    return Setup(net, model, tensor(X, net), Y, loss_function, X.shape[0])


def class_indices(Y, library):
    """The class of each one-hot row of ``Y``; ``UnsupportedError`` for any other probability row."""
    Y = np.asarray(Y)
    classes = Y.argmax(axis=1)
    if not np.array_equal(Y, np.eye(Y.shape[1], dtype=Y.dtype)[classes]):
        raise UnsupportedError(
            f"{library} takes cross-entropy targets as class indices only, but Y has rows that are "
            "not one-hot; pass one-hot rows (np.eye(n_L)[classes]) or use an engine that takes "
            "probability targets"
        )
    return classes


@contextlib.contextmanager
def default_dtype(net):
    """torch's default dtype set to the network's for the duration (restored after), for libraries that create
    tensors without a dtype and so assume the default is the model's."""
    t = torch()
    previous = t.get_default_dtype()
    t.set_default_dtype(getattr(t, net.dtype.name))
    try:
        yield
    finally:
        t.set_default_dtype(previous)


def plain_mlp(net, library="this library"):
    """``UnsupportedNetworkError`` unless ``net`` is a plain MLP with the mean of mse or cross_entropy: the adapters map
    those two losses' scales and the MLP's ``nn.Sequential`` (``net.is_mlp``), nothing else yet."""
    check_network(net)
    if not net.is_mlp:
        raise UnsupportedNetworkError(
            f"the {library} adapter maps plain MLPs with the batch mean of mse or "
            f"cross_entropy only, and this network is not one ({net.describe()})"
        )


def inputs(net, X, library="this library"):
    plain_mlp(net, library)
    return tensor(check_inputs(net, X), net)


def direction(net, v):
    """``v`` as one tensor per parameter (``W_l`` and ``b_l`` of each layer), in the contract's order."""
    plain_mlp(net)
    v = check_direction(net, v)
    shapes = [p.shape for w, b in zip(net.weights, net.biases) for p in (w, b)]
    pieces, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        pieces.append(tensor(v[start : start + size].reshape(shape), net))
        start += size
    return pieces


def layer(net, l, name="l"):
    check_network(net)
    return check_layer(net, l, name)


def seed(value):
    return check_seed("seed", value)


def positive_count(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ArgumentError(f"{name} is {value!r}, but it must be an integer >= 1 (the number of Monte-Carlo samples)")
    return int(value)


def numpy(value):
    """A tensor, or a list of tensors flattened and concatenated in order, as float64 numpy."""
    t = torch()
    if isinstance(value, (list, tuple)):
        value = t.cat([v.detach().reshape(-1) for v in value])
    return value.detach().to("cpu", t.float64).numpy()


def rows(value, n):
    """A list of per-parameter tensors with a leading axis ``n`` -> ``(n, sum of sizes)`` float64 numpy."""
    t = torch()
    return t.cat([v.detach().reshape(n, -1) for v in value], dim=1).to("cpu", t.float64).numpy()


def homogeneous_order(n_out, n_in):
    """For layer parameters as the row-major ``(n_out, n_in + 1)`` matrix ``[W | b]``: the position in that matrix of
    each contract entry (``W`` row-major, then ``b``)."""
    weight = (np.arange(n_out)[:, None] * (n_in + 1) + np.arange(n_in)[None, :]).reshape(-1)
    bias = np.arange(n_out) * (n_in + 1) + n_in
    return np.concatenate([weight, bias])


def kron_block(G, A):
    """``kron(G, A)`` (``G`` ``(n_out, n_out)``, ``A`` ``(n_in + 1, n_in + 1)`` over ``[z; 1]``) in the contract's
    order of the layer: ``kron`` indexes the row-major ``[W | b]``, the contract lists ``W`` then ``b``."""
    order = homogeneous_order(G.shape[0], A.shape[0] - 1)
    return np.kron(G, A)[np.ix_(order, order)]


def block_slices(net, l, m):
    slices = net.param_slices
    return slices[l], slices[m]


def descending(values, k):
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    return values[:k]


def check_k(net, k):
    P = net.n_params
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= P:
        raise ArgumentError(f"k is {k!r}, but it must be an integer in 1..{P} (the number of parameters)")
    return int(k)
