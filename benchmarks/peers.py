"""The field's curvature libraries as timed peers: BackPACK and curvlinops, each quantity they compute exactly staged
the way a user would call it, set up (model, loss, hooks, operators) outside the timed call.

A peer provides a quantity when its namespace here has ``stage_<quantity>`` (as an engine of the contract does); the
torch objects, the sum-reduced torch loss and the factor that maps the library's sums onto the contract's ``E`` come
from the adapters' conventions (``peers._common``, ``peers/__init__.py``). ``prepare`` returns ``(compute, fetch,
covered)``: ``compute()`` runs the library and waits for it, returning its tensors; ``fetch`` turns them into the
contract's float64 numpy result (raveled and joined for a result of several arrays), and ``covered`` is the boolean
mask of the entries the peer computes (``None``: all), so that validation compares only those.

- BackPACK: the same-layer block from ``HMP`` applied to the identity (block-diagonal per parameter tensor: the
  ``W_l``/``b_l`` cross terms are not covered), ``DiagGGNExact``, ``DiagHessian`` and ``KFLR``. KFLR keeps the weight
  and the bias apart: it has ``A_z = (1/N) sum z z^T`` without the contract's bias row and column of ``A_l`` (not
  covered), and its ``G_l``. Only layer ``l``'s weight requires a gradient, so that it computes that layer's factors
  alone (the equivalent of one ``kfac_factors`` call: the output rows backpropagated to the layer, then ``A`` and
  ``G``), not every layer's and not the bias's copy of ``G``.
- curvlinops: the same-layer block from ``HessianLinearOperator`` applied to the identity, the GGN matrix-vector
  product of ``GGNLinearOperator``, and ``KFACLinearOperator`` with the exact loss Hessian (``type-2``) and the bias
  as ``W``'s last column (``separate_weight_and_bias=False``): the contract's ``(A_l, G_l)``.

Install them without letting pip replace torch: ``peers._common.INSTALL``. A peer that is missing, or cannot take the
network, is reported with the reason.
"""

import warnings

import numpy as np

PEERS = ("backpack", "curvlinops")
INSTALL = (
    "pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch einops unfoldNd einconv "
    "linear_operator jaxtyping wadler_lindig"
)


class PeerUnavailableError(RuntimeError):
    """A peer that is not installed, has no staged call for a quantity, or does not support the network."""


def available(name):
    """``None`` when the peer can be used, else the reason it cannot."""
    try:
        if name == "backpack":
            import backpack  # noqa: F401
        elif name == "curvlinops":
            import curvlinops  # noqa: F401
        else:
            return f"unknown peer {name!r}; peers are: {', '.join(PEERS)}"
    except Exception as exc:  # a broken optional install must not stop the sweep
        return f"peer {name!r} is not importable ({type(exc).__name__}: {exc}); install with: {INSTALL}"
    return None


def _stage(name, quantity):
    return getattr(_LIBRARIES.get(name), f"stage_{quantity}", None)


def provides(name, quantity):
    """Whether the peer ``name`` has a staged call for ``quantity``."""
    return _stage(name, quantity) is not None


def label(name, quantity):
    """What computes ``quantity`` in the peer, in words (``BackPACK DiagGGNExact``)."""
    stage = _stage(name, quantity)
    return getattr(stage, "label", name)


def prepare(name, call, device="cpu"):
    """``(compute, fetch, covered)`` for the contract ``call`` (see the module's docstring); set-up is not timed."""
    reason = available(name)
    if reason:
        raise PeerUnavailableError(reason)
    stage = _stage(name, call.quantity.name)
    if stage is None:
        raise PeerUnavailableError(f"{name} has no staged call for {call.quantity.name}")
    return stage(_Problem(call, device, name), call)


class _Problem:
    """The call's network, data and loss as torch objects on ``device``, from the adapters' ``setup`` (sum-reduced
    torch loss; ``mean_scale`` maps the library's sums onto the contract's ``E``)."""

    def __init__(self, call, device, name):
        import torch

        from peers import _common
        from xval.errors import XvalError

        X, Y = call.argument("X"), call.argument("Y")
        try:
            setup = _common.setup(call.net, X, Y)
        except XvalError as exc:  # a network the torch conversion does not take (yet)
            raise PeerUnavailableError(f"{name} cannot take this network: {exc}") from None
        self.torch, self.setup = torch, setup
        self.model = setup.model.to(device)
        self.X, self.Y = setup.X.to(device), setup.Y.to(device)
        self.loss_function, self.mean_scale = setup.loss_function, setup.mean_scale
        self.dtype, self.device = self.X.dtype, device
        self.synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def linear(self, l):
        return self.setup.linear(l)

    def numpy(self, tensors, scale=1.0):
        """Tensors raveled and joined, as float64 numpy, times ``scale``."""
        t = self.torch
        parts = tensors if isinstance(tensors, (list, tuple)) else [tensors]
        joined = t.cat([v.detach().reshape(-1) for v in parts])
        return (joined * scale).to("cpu", t.float64).numpy()


def _labelled(text):
    def mark(function):
        function.label = text
        return function

    return mark


# ---- BackPACK -----------------------------------------------------------------------------------------------------
class BackPACK:
    """BackPACK's extensions, one backward pass of the summed loss each."""

    @staticmethod
    def _extended(problem):
        from backpack import extend

        model, loss_function = extend(problem.model), extend(problem.loss_function)

        def backward(*extension):
            from backpack import backpack

            model.zero_grad(set_to_none=True)
            loss = loss_function(model(problem.X), problem.Y)
            with backpack(*extension), warnings.catch_warnings():
                # torch warns that the hooks fire for outputs when X needs no gradient: that is how BackPACK works
                warnings.filterwarnings("ignore", message="Full backward hook")
                loss.backward()

        return model, backward

    @staticmethod
    @_labelled("BackPACK HMP on the identity")
    def stage_hessian_block(problem, call):
        from backpack.extensions import HMP

        _, backward = BackPACK._extended(problem)
        l = call.argument("l")
        W, b = problem.linear(l).weight, problem.linear(l).bias
        n_w, n_b = W.numel(), b.numel()
        covered = np.zeros((n_w + n_b, n_w + n_b), dtype=bool)
        covered[:n_w, :n_w] = covered[n_w:, n_w:] = True
        eye_w = problem.torch.eye(n_w, dtype=problem.dtype, device=problem.device).reshape(n_w, *W.shape)
        eye_b = problem.torch.eye(n_b, dtype=problem.dtype, device=problem.device)

        def compute():
            """The weight-weight and bias-bias parts, as BackPACK gives them (assembled by ``fetch``, untimed)."""
            backward(HMP())
            parts = W.hmp(eye_w), b.hmp(eye_b)
            problem.synchronize()
            return parts

        def fetch(parts):
            block = np.zeros((n_w + n_b, n_w + n_b))
            block[:n_w, :n_w] = problem.numpy(parts[0], problem.mean_scale).reshape(n_w, n_w)
            block[n_w:, n_w:] = problem.numpy(parts[1], problem.mean_scale).reshape(n_b, n_b)
            return block

        return compute, fetch, covered

    @staticmethod
    def _diagonal(problem, extension, field):
        model, backward = BackPACK._extended(problem)
        params = list(model.parameters())

        def compute():
            backward(extension)
            problem.synchronize()
            return [getattr(p, field) for p in params]

        return compute, lambda parts: problem.numpy(parts, problem.mean_scale), None

    @staticmethod
    @_labelled("BackPACK DiagGGNExact")
    def stage_ggn_diagonal(problem, call):
        from backpack.extensions import DiagGGNExact

        return BackPACK._diagonal(problem, DiagGGNExact(), "diag_ggn_exact")

    @staticmethod
    @_labelled("BackPACK DiagHessian")
    def stage_hessian_diagonal(problem, call):
        from backpack.extensions import DiagHessian

        return BackPACK._diagonal(problem, DiagHessian(), "diag_h")

    @staticmethod
    @_labelled("BackPACK KFLR (layer's weight only)")
    def stage_kfac_factors(problem, call):
        from backpack.extensions import KFLR

        model, backward = BackPACK._extended(problem)
        weight = problem.linear(call.argument("l")).weight
        for p in model.parameters():
            p.requires_grad_(p is weight)
        n_out, n_in = weight.shape
        covered_A = np.zeros((n_in + 1, n_in + 1), dtype=bool)
        covered_A[:n_in, :n_in] = True
        covered = np.concatenate([covered_A.ravel(), np.ones(n_out * n_out, dtype=bool)])

        def compute():
            backward(KFLR())
            problem.synchronize()
            G, A = weight.kflr
            return A, G

        def fetch(parts):
            A = np.zeros((n_in + 1, n_in + 1))
            A[:n_in, :n_in] = problem.numpy(parts[0]).reshape(n_in, n_in)  # already the batch mean
            return np.concatenate([A.ravel(), problem.numpy(parts[1], problem.mean_scale)])

        return compute, fetch, covered


# ---- curvlinops ---------------------------------------------------------------------------------------------------
class Curvlinops:
    """curvlinops' linear operators, built (hooks, data) before timing; the timed call applies them."""

    @staticmethod
    def _operator(kind, problem, params, **options):
        import curvlinops

        return getattr(curvlinops, kind)(
            problem.model, problem.loss_function, params, [(problem.X, problem.Y)], check_deterministic=False, **options
        )

    @staticmethod
    @_labelled("curvlinops HessianLinearOperator on the identity")
    def stage_hessian_block(problem, call):
        layer = problem.linear(call.argument("l"))
        operator = Curvlinops._operator("HessianLinearOperator", problem, [layer.weight, layer.bias])
        eye = problem.torch.eye(operator.shape[1], dtype=problem.dtype, device=problem.device)

        def compute():
            block = operator @ eye
            problem.synchronize()
            return block

        # fetch may get the block's rows 0, k, 2k, ... only (strided validation of a large block)
        return compute, lambda block: problem.numpy(block, problem.mean_scale).reshape(-1, eye.shape[1]), None

    @staticmethod
    @_labelled("curvlinops GGNLinearOperator @ v")
    def stage_ggnvp(problem, call):
        operator = Curvlinops._operator("GGNLinearOperator", problem, list(problem.model.parameters()))
        v = problem.torch.as_tensor(np.asarray(call.argument("v")), dtype=problem.dtype, device=problem.device)

        def compute():
            product = operator @ v
            problem.synchronize()
            return product

        return compute, lambda product: problem.numpy(product, problem.mean_scale), None

    @staticmethod
    @_labelled("curvlinops KFACLinearOperator (type-2)")
    def stage_kfac_factors(problem, call):
        layer = problem.linear(call.argument("l"))
        operator = Curvlinops._operator(
            "KFACLinearOperator",
            problem,
            [layer.weight, layer.bias],
            fisher_type="type-2",
            separate_weight_and_bias=False,
        )

        def compute():
            # compute_kronecker_factors adds to the factors it holds: start from none, as a fresh operator does
            operator._input_covariances.clear()
            operator._gradient_covariances.clear()
            operator.compute_kronecker_factors()
            problem.synchronize()
            (A,), (G,) = operator._input_covariances.values(), operator._gradient_covariances.values()
            return A, G

        def fetch(parts):
            return np.concatenate([problem.numpy(parts[0]), problem.numpy(parts[1], problem.mean_scale)])

        return compute, fetch, None


_LIBRARIES = {"backpack": BackPACK, "curvlinops": Curvlinops}
