"""The largest Hessian eigenvalues: ``jnp.linalg.eigvalsh`` of the dense Hessian (``stage_hessian``'s) up to
``DENSE_LIMIT`` parameters, beyond that ARPACK's Lanczos (``scipy.sparse.linalg.eigsh``) on jitted Hessian-vector
products, stopped at a relative accuracy below the comparison tolerance and checked by the residuals
``||H x - lambda x||``."""

import jax
import jax.numpy as jnp
import numpy as np

from xval.checks import check_count
from xval.lanczos import lanczos

from . import _model as model
from ._second_order import _hessian

DENSE_LIMIT = 2000  # P up to this: the (P, P) Hessian (32 MB) and a dense eigendecomposition


def _objective_of_vector(arch):
    objective = model.make_objective(arch)
    return lambda theta, X, Y: objective(model.groups(arch, theta), X, Y)


def _hvp(arch):
    gradient = jax.grad(_objective_of_vector(arch))
    return lambda theta, X, Y, v: jax.jvp(lambda point: gradient(point, X, Y), (theta,), (v,))[1]


def stage_top_eigenvalues(net, X, Y, k):
    """``top_eigenvalues`` staged: ``(k,)``, the ``k`` largest eigenvalues of the Hessian of ``E``, descending."""
    k = check_count(net, k)
    X, Y = model.data(net, X, Y, "top_eigenvalues", k=k)
    theta = model.array(net.to_vector(), net.dtype)
    if net.n_params <= DENSE_LIMIT:  # the Hessian's own jitted function (compiled once for both quantities)
        hessian = model.staged(_hessian, net, theta, X, Y)
        return lambda: jax.block_until_ready(jnp.linalg.eigvalsh(hessian())[::-1][:k])
    product = model.jitted(model.architecture(net), _hvp)

    def matvec(v):
        return model.to_numpy(product(theta, X, Y, model.array(np.reshape(v, -1), net.dtype)))

    return lambda: model.array(lanczos(matvec, net.n_params, k, net.dtype.name, DENSE_LIMIT), net.dtype)
