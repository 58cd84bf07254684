"""The largest Hessian eigenvalues: ``torch.linalg.eigvalsh`` of the dense Hessian up to ``DENSE_LIMIT`` parameters,
beyond that ARPACK's Lanczos (``scipy.sparse.linalg.eigsh``) on ``torch.func`` Hessian-vector products, stopped at
a relative accuracy below the comparison tolerance and checked by the residuals ``||H x - lambda x||``."""

import numpy as np
import torch
from torch.func import grad, hessian, jvp

from xval.checks import check_count
from xval.lanczos import lanczos

from . import _model as model

DENSE_LIMIT = 2000  # P up to this: the (P, P) Hessian (32 MB) and a dense eigendecomposition


def stage_top_eigenvalues(net, X, Y, k):
    """``top_eigenvalues`` staged: ``(k,)``, the ``k`` largest eigenvalues of the Hessian of ``E``, descending."""
    k = check_count(net, k)
    X, Y = model.data(net, X, Y, "top_eigenvalues", k=k)
    theta = torch.cat(model.parameters(net))

    def objective(theta):
        return model.objective(net, model.groups(net, theta), X, Y)

    if net.n_params <= DENSE_LIMIT:
        return model.in_forward_mode(lambda: torch.linalg.eigvalsh(hessian(objective)(theta)).flip(0)[:k])

    gradient = grad(objective)

    def matvec(v):
        with model.forward_mode():
            tangent = model.tensor(np.asarray(v, dtype=np.float64).reshape(-1), net.dtype)
            return model.to_numpy(jvp(gradient, (theta,), (tangent,))[1])

    return lambda: model.tensor(lanczos(matvec, net.n_params, k, net.dtype.name, DENSE_LIMIT), net.dtype)
