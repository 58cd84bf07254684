"""opacus as an engine: per-sample gradients from its ``GradSampleModule``.

- ``per_sample_gradients``: ``GradSampleModule(loss_reduction="sum")`` (hooks), ``p.grad_sample``
  ``(N, *p.shape)``; torch's per-sample term is TERM_SCALE loss_n, so divided by TERM_SCALE.

``loss_reduction`` tells opacus how the backpropagated loss was reduced: with ``"mean"`` it multiplies the
backpropagated gradients by the batch size to undo the mean. The adapter backpropagates the sum and says so.
``per_sample_gradients_functorch`` is the same through opacus' functorch path (``force_functorch=True``), and
``per_sample_gradients_expanded_weights`` through torch's ExpandedWeights (``GradSampleModuleExpandedWeights``).
"""

import warnings

from . import _common
from ._common import rows

opacus = _common.require("opacus", "opacus")
from opacus import GradSampleModule  # noqa: E402

LIBRARY = "opacus"


def _grad_samples(net, X, Y, wrap):
    problem = _common.setup(net, X, Y, library=LIBRARY)
    module = wrap(problem.model)
    loss = problem.loss_function(module(problem.X), problem.Y)
    with warnings.catch_warnings():
        # torch warns that the hooks fire for outputs when X needs no gradient: that is how opacus works here
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        loss.backward()
    return rows([p.grad_sample for p in problem.model.parameters()], problem.n) / problem.term_scale


def per_sample_gradients(net, X, Y):
    """``(N, P)``: row n = d loss_n / dtheta, from ``GradSampleModule``'s hooks."""
    # the loss backpropagated is the batch sum, so opacus must not rescale by the batch size
    return _grad_samples(net, X, Y, lambda model: GradSampleModule(model, loss_reduction="sum"))


def per_sample_gradients_functorch(net, X, Y):
    """``(N, P)`` from ``GradSampleModule(force_functorch=True)`` (opacus' torch.func path)."""
    return _grad_samples(net, X, Y, lambda model: GradSampleModule(model, loss_reduction="sum", force_functorch=True))


def per_sample_gradients_expanded_weights(net, X, Y):
    """``(N, P)`` from ``GradSampleModuleExpandedWeights`` (torch's ExpandedWeights)."""
    from opacus.grad_sample.gsm_exp_weights import GradSampleModuleExpandedWeights

    return _grad_samples(net, X, Y, lambda model: GradSampleModuleExpandedWeights(model, loss_reduction="sum"))
