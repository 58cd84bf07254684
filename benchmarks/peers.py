"""Optional peers for the same-layer Hessian block, so users see what they would otherwise pick:
BackPACK's Hessian-matrix product (HMP) and curvlinops' ``HessianLinearOperator``, each applied to the identity.

Install them without letting pip replace torch (BackPACK declares a torchvision dependency, which pins torch):
``pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch einops unfoldNd einconv linear_operator
jaxtyping wadler_lindig``. A peer that is missing, or cannot take the network, is reported with the reason.

``prepare`` returns ``(compute, fetch, covered)``: ``compute()`` builds the ``(P_l, P_l)`` block as a torch tensor
on the device and waits for it, ``fetch`` turns that into the suite's float64 numpy block (scaled to its loss), and
``covered`` is a boolean mask of the entries the peer computes. BackPACK's HMP is block-diagonal per parameter
tensor, so it covers the ``W_l``/``W_l`` and ``b_l``/``b_l`` parts, not the ``W_l``/``b_l`` cross terms; validation
compares only covered entries.
"""
import warnings

import numpy as np

PEERS = ("backpack", "curvlinops")
INSTALL = ("pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch einops unfoldNd einconv "
           "linear_operator jaxtyping wadler_lindig")


class PeerUnavailableError(RuntimeError):
    """A peer that is not installed or does not support the network."""


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


def _torch_model(net, device):
    import torch

    modules = {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}
    dtype = getattr(torch, net.dtype.name)
    layers, linears = [], []
    for w, b, name in zip(net.weights, net.biases, net.activations):
        linear = torch.nn.Linear(w.shape[1], w.shape[0]).to(device=device, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(np.array(w)))
            linear.bias.copy_(torch.as_tensor(np.array(b)))
        layers.append(linear)
        linears.append(linear)
        if name != "identity":
            if name not in modules:
                raise PeerUnavailableError(f"the peers are wired for activations {sorted(modules)} and identity, not {name!r}")
            layers.append(modules[name]())
    if net.loss != "mse":
        raise PeerUnavailableError(f"the peers are wired for the mse loss only, not {net.loss!r}")
    return torch.nn.Sequential(*layers), linears


def _mse_scale(net):
    # torch's MSELoss(reduction="mean") is sum / (N * n_L); the contract's E is 0.5 * sum / N.
    return net.sizes[-1] / 2.0


def prepare(name, net, X, Y, layer, device="cpu"):
    """``(compute, fetch, covered)`` for the peer's block of ``layer`` (see the module's docstring); set-up is not
    timed."""
    reason = available(name)
    if reason:
        raise PeerUnavailableError(reason)
    import torch

    model, linears = _torch_model(net, device)
    dtype = getattr(torch, net.dtype.name)
    Xt = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    Yt = torch.as_tensor(np.asarray(Y), dtype=dtype, device=device)
    W, b = linears[layer].weight, linears[layer].bias
    n_w, n_b = W.numel(), b.numel()
    scale = _mse_scale(net)
    covered = np.zeros((n_w + n_b, n_w + n_b), dtype=bool)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def fetch(block):
        return (torch.as_tensor(block).detach() * scale).to("cpu", torch.float64).numpy()

    if name == "backpack":
        from backpack import backpack, extend
        from backpack.extensions import HMP

        model = extend(model)
        loss_fn = extend(torch.nn.MSELoss(reduction="mean"))
        covered[:n_w, :n_w] = covered[n_w:, n_w:] = True
        eye_w = torch.eye(n_w, dtype=dtype, device=device).reshape(n_w, *W.shape)
        eye_b = torch.eye(n_b, dtype=dtype, device=device)

        def compute():
            """The weight-weight and bias-bias parts, as BackPACK gives them (assembled by ``fetch``, untimed)."""
            model.zero_grad()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Full backward hook")
                with backpack(HMP()):
                    loss_fn(model(Xt), Yt).backward()
            parts = W.hmp(eye_w), b.hmp(eye_b)
            synchronize()
            return parts

        def fetch_parts(parts):
            block = torch.zeros(n_w + n_b, n_w + n_b, dtype=dtype, device=device)
            block[:n_w, :n_w] = parts[0].reshape(n_w, n_w)
            block[n_w:, n_w:] = parts[1].reshape(n_b, n_b)
            return fetch(block)

        return compute, fetch_parts, covered
    from curvlinops import HessianLinearOperator

    covered[:] = True
    loss_fn = torch.nn.MSELoss(reduction="mean")
    eye = torch.eye(n_w + n_b, dtype=dtype, device=device)

    def compute():
        operator = HessianLinearOperator(model, loss_fn, [W, b], [(Xt, Yt)], check_deterministic=False)
        block = operator @ eye
        synchronize()
        return block

    return compute, fetch, covered
