"""Problem 3: why does training stall? Measure the usual causes on a network and a batch, name each with its remedy.

Per layer: the fraction of saturated sigmoid/tanh units, of dead relu units, the gradient norm and the
weight scale; for the whole network the largest Hessian eigenvalue ``lambda_max`` (power iteration on
``hvp``, never forming the Hessian) and the stable-step bound ``2 / lambda_max``: along the top
eigenvector, gradient descent multiplies the error by ``1 - lr * lambda_max`` per step, which shrinks only
when ``lr < 2 / lambda_max``.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from xval.checks import check_data
from xval.errors import check_non_negative, check_positive, check_seed, check_whole

from .activations import get_activation
from . import gradient, loss
from ._dense_first_order import forward_pass
from . import hvp  # Pearlmutter's R-operator: O(|W|) per product, the Hessian is never formed

# A sigmoid/tanh unit is saturated on a sample when f'(a) is below this fraction of f's largest slope.
SATURATION_SLOPE = 0.01
# A layer gets a finding when more than these fractions of its units are saturated / dead.
SATURATED_LIMIT = 0.5
DEAD_LIMIT = 0.5
# First-layer versus last-layer gradient norm beyond which gradients vanish / explode across depth.
VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3
# A learning rate below this fraction of 2 / lambda_max is flagged as needlessly small.
SMALL_LR_FRACTION = 1e-2
# Above these, inputs or weights count as badly scaled (weights relative to the N(0, 1/n_in) initialisation).
LARGE_INPUT_RMS = 3.0
LARGE_WEIGHT_SCALE = 3.0


@dataclass(frozen=True)
class LayerReport:
    """What ``diagnose`` measured on layer ``layer`` (``None`` where a measure does not apply)."""

    layer: int
    activation: str
    width: int
    saturated_fraction: Optional[float]  # sigmoid/tanh: mean over samples of the fraction of units with f' < 1% of max
    dead_fraction: Optional[float]  # relu: fraction of units with a <= 0 on every sample of the batch
    gradient_norm: float  # ||dE/dtheta_l|| over W_l and b_l
    weight_scale: float  # RMS of W_l times sqrt(n_in): 1 for the N(0, 1/n_in) initialisation


@dataclass(frozen=True)
class Finding:
    """One cause of stalling: ``kind`` is saturated, dead, vanishing, exploding, lr_too_large or lr_too_small."""

    kind: str
    layer: Optional[int]
    message: str
    remedy: str

    def __str__(self):
        where = f" layer {self.layer}:" if self.layer is not None else ""
        return f"[{self.kind}]{where} {self.message}\n     remedy: {self.remedy}"


@dataclass(frozen=True)
class Diagnosis:
    """The report of ``diagnose``: per-layer measures, curvature, and the findings (empty when healthy)."""

    network: str
    n_samples: int
    loss: float
    input_rms: float
    layers: tuple
    lambda_max: float
    power_iterations: int
    power_converged: bool
    stable_lr: float  # 2 / lambda_max (inf when lambda_max <= 0)
    lr: Optional[float]
    findings: tuple

    @property
    def healthy(self):
        return not self.findings

    @property
    def kinds(self):
        """The set of finding kinds, e.g. ``{"saturated", "lr_too_large"}``."""
        return {finding.kind for finding in self.findings}

    def __str__(self):
        percent = lambda value: "-" if value is None else f"{100 * value:.0f}%"  # noqa: E731
        lines = [
            f"diagnose: {self.network}",
            f"  N = {self.n_samples} samples, loss E = {self.loss:.6g}, "
            f"largest input feature RMS = {self.input_rms:.3g}",
            f"  {'layer':>5}  {'activation':<10} {'width':>5}  {'saturated':>9}  {'dead':>5}  "
            f"{'|dE/dtheta_l|':>13}  {'weight scale':>12}",
        ]
        for r in self.layers:
            lines.append(
                f"  {r.layer:>5}  {r.activation:<10} {r.width:>5}  {percent(r.saturated_fraction):>9}  "
                f"{percent(r.dead_fraction):>5}  {r.gradient_norm:>13.3e}  {r.weight_scale:>12.3g}"
            )
        converged = "converged" if self.power_converged else "NOT converged"
        lines.append(
            f"  lambda_max = {self.lambda_max:.6g} (power iteration on hvp, "
            f"{self.power_iterations} products, {converged})"
        )
        lr = "not given" if self.lr is None else f"{self.lr:.6g}"
        lines.append(f"  stable step: lr < 2 / lambda_max = {self.stable_lr:.6g}; lr = {lr}")
        if self.healthy:
            lines.append(
                "  no findings: no saturation, dead units, vanishing/exploding gradients or unstable step size"
            )
        else:
            lines.append("  findings:")
            lines.extend(f"  {number}. {finding}" for number, finding in enumerate(self.findings, 1))
        return "\n".join(lines)


def largest_eigenvalue(net, X, Y, tol=1e-10, max_iter=500, block=8, seed=0):
    """``(lambda_max, hvp products used, converged)``: the largest (algebraic) eigenvalue of the Hessian of ``E``.

    Block power iteration (subspace iteration): ``V <- orth(H V)`` on ``block`` vectors at once, with the
    Rayleigh-Ritz values of ``V^T H V`` as estimates; ``block = 1`` is plain power iteration. A block matters
    because mse with ``K`` outputs gives ``K`` nearly equal top eigenvalues, among which a single vector
    converges at the rate of their tiny ratio. Power iteration finds the eigenvalues of largest magnitude;
    when the most negative one dominates, it runs again on ``H - lambda_min I`` (all eigenvalues >= 0, the
    largest ``lambda_max - lambda_min``). Converged: the top Ritz value changed by at most ``tol`` relative.
    """
    X, Y = check_data(net, X, Y)
    _check_iteration(tol, max_iter)
    check_whole(
        "block", block, 1, "pass the number of vectors iterated together, e.g. block=8 (1: plain power iteration)"
    )
    seed = check_seed("seed", seed)
    block = min(int(block), net.n_params)
    max_iter = int(max_iter)
    start = np.linalg.qr(np.random.default_rng(seed).standard_normal((net.n_params, block)))[0]

    def ritz(shift):
        """Ritz values (ascending) of ``H + shift I`` after subspace iteration, products used, converged."""
        V, previous = start, None
        for count in range(1, max_iter + 1):
            W = np.stack([hvp(net, X, Y, v) for v in V.T], axis=1) + shift * V
            small = V.T @ W
            values, vectors = np.linalg.eigh(0.5 * (small + small.T))
            top = values[np.argmax(np.abs(values))] if shift == 0.0 else values[-1]
            if previous is not None and abs(top - previous) <= tol * abs(top):
                return values, count * block, True
            V, previous = np.linalg.qr(W @ vectors)[0], top
        return values, max_iter * block, False

    values, used, converged = ritz(0.0)
    if values[-1] >= abs(values[0]) or values[0] >= 0.0:
        return float(values[-1]), used, converged
    lowest = float(values[0])
    values, more, converged = ritz(-lowest)
    return float(values[-1]) + lowest, used + more, converged


def _check_iteration(tol, max_iter):
    check_non_negative("tol", tol, "pass a relative tolerance such as 1e-10 (0 runs all max_iter iterations)")
    check_whole("max_iter", max_iter, 1, "pass the most power iterations to run, e.g. max_iter=500")


def _layer_reports(net, X, Y):
    a, _ = forward_pass(net, X)
    grad = gradient(net, X, Y)
    reports = []
    for layer, (w, name) in enumerate(zip(net.weights, net.activations)):
        saturated = dead = None
        activation = get_activation(name)
        if activation.max_slope is not None:  # a saturating activation
            slope = activation.df(a[layer]) / activation.max_slope
            saturated = float(np.mean(slope < SATURATION_SLOPE))
        if activation.can_die:
            dead = float(np.mean(np.all(a[layer] <= 0, axis=0)))
        reports.append(
            LayerReport(
                layer=layer,
                activation=name,
                width=w.shape[0],
                saturated_fraction=saturated,
                dead_fraction=dead,
                gradient_norm=float(np.linalg.norm(grad[net.param_slices[layer]])),
                weight_scale=float(np.sqrt(np.mean(w.astype(np.float64) ** 2) * w.shape[1])),
            )
        )
    return reports


def _scale_remedies(report, input_rms):
    """Remedies for saturation, ordered by what the measures point at."""
    remedies = []
    if report.weight_scale > LARGE_WEIGHT_SCALE:
        remedies.append(
            f"rescale the initialisation: W_{report.layer} is {report.weight_scale:.3g}x the N(0, 1/n_in) scale, "
            "use W ~ N(0, 1/n_in) (LeCun/Glorot)"
        )
    if report.layer == 0 and input_rms > LARGE_INPUT_RMS:
        remedies.append(f"normalise the inputs to zero mean and unit variance (a feature has RMS {input_rms:.3g})")
    if not remedies:
        remedies.append(
            "rescale the initialisation or normalise the inputs so that pre-activations stay within a few units of 0"
        )
    remedies.append("or change the activation (relu does not saturate for a > 0)")
    return "; ".join(remedies)


def _findings(reports, input_rms, lam, stable_lr, lr):
    found = []
    for r in reports:
        if r.saturated_fraction is not None and r.saturated_fraction > SATURATED_LIMIT:
            found.append(
                Finding(
                    "saturated",
                    r.layer,
                    f"{100 * r.saturated_fraction:.0f}% of the {r.activation} units are saturated (f'(a) < "
                    f"{SATURATION_SLOPE:g} x its maximum), so almost no gradient flows through them",
                    _scale_remedies(r, input_rms),
                )
            )
        if r.dead_fraction is not None and r.dead_fraction > DEAD_LIMIT:
            found.append(
                Finding(
                    "dead",
                    r.layer,
                    f"{100 * r.dead_fraction:.0f}% of the relu units are dead (a <= 0 on every sample): "
                    "their gradient is exactly zero, so gradient descent can never revive them",
                    "re-initialise with small positive biases and the N(0, 2/n_in) (He) scale, lower the learning rate "
                    "(large steps push biases negative), or change the activation (softplus, or a leaky relu)",
                )
            )
    first, last = reports[0].gradient_norm, reports[-1].gradient_norm
    # Saturated or dead units already explain small early gradients; report vanishing only without them.
    explained = any(finding.kind in ("saturated", "dead") for finding in found)
    if len(reports) > 1 and last > 0.0:
        ratio = first / last
        if ratio < VANISHING_RATIO and not explained:
            found.append(
                Finding(
                    "vanishing",
                    0,
                    "the gradient vanishes across depth: "
                    f"||dE/dtheta_0|| / ||dE/dtheta_{len(reports) - 1}|| = {ratio:.2e}, "
                    "so the first layers barely move",
                    "rescale the initialisation so every layer keeps the signal's variance (N(0, 1/n_in) for tanh, "
                    "N(0, 2/n_in) for relu), change saturating activations to relu, or use fewer layers",
                )
            )
        elif ratio > EXPLODING_RATIO:
            found.append(
                Finding(
                    "exploding",
                    0,
                    "the gradient explodes across depth: "
                    f"||dE/dtheta_0|| / ||dE/dtheta_{len(reports) - 1}|| = {ratio:.2e}",
                    "rescale the initialisation down to N(0, 1/n_in), lower the learning rate, "
                    "or clip the gradient norm",
                )
            )
    if lr is not None and lam > 0.0:
        if lr > stable_lr:
            found.append(
                Finding(
                    "lr_too_large",
                    None,
                    f"lr = {lr:.4g} is above the stable bound 2 / lambda_max = {stable_lr:.4g} (lr * lambda_max = "
                    f"{lr * lam:.3g} > 2): along the top Hessian eigenvector each step multiplies the error by "
                    f"{1 - lr * lam:.3g}, so the loss oscillates or diverges",
                    f"lower the learning rate below {stable_lr:.4g}, e.g. lr = 1 / lambda_max = {1 / lam:.4g}; "
                    "normalising the inputs also lowers lambda_max",
                )
            )
        elif lr < SMALL_LR_FRACTION * stable_lr:
            found.append(
                Finding(
                    "lr_too_small",
                    None,
                    f"lr = {lr:.4g} is below {SMALL_LR_FRACTION:g} x the stable bound "
                    f"2 / lambda_max = {stable_lr:.4g}: each step moves much less than the curvature allows",
                    f"raise the learning rate towards 1 / lambda_max = {1 / lam:.4g}",
                )
            )
    return found


def diagnose(net, X, Y, lr=None, tol=1e-10, max_iter=500):
    """A ``Diagnosis`` of ``net`` on the batch ``X, Y`` (and of the learning rate ``lr``, when given).

    ``print(diagnose(...))`` shows the per-layer table, ``lambda_max`` and each finding with its remedy;
    ``.findings`` is empty for a network that should train. Thresholds are the module constants.
    """
    X, Y = check_data(net, X, Y)
    if lr is not None:
        check_positive("lr", lr, "pass the learning rate you train with, or lr=None to diagnose the network alone")
    _check_iteration(tol, max_iter)
    reports = _layer_reports(net, X, Y)
    input_rms = float(np.max(np.sqrt(np.mean(X.astype(np.float64) ** 2, axis=0))))
    lam, used, converged = largest_eigenvalue(net, X, Y, tol=tol, max_iter=max_iter)
    stable_lr = 2.0 / lam if lam > 0.0 else float("inf")
    return Diagnosis(
        network=repr(net),
        n_samples=X.shape[0],
        loss=loss(net, X, Y),
        input_rms=input_rms,
        layers=tuple(reports),
        lambda_max=lam,
        power_iterations=used,
        power_converged=converged,
        stable_lr=stable_lr,
        lr=None if lr is None else float(lr),
        findings=tuple(_findings(reports, input_rms, lam, stable_lr, lr)),
    )
