"""Who is right: when engines disagree on a call, the arbiter (``xval.arbiter``) computes the truth, and each engine
is judged against it with the rounding floor.

The rounding floor of an entry is ``bound``, the first-order bound on the error of evaluating the arbiter's own
formulas (the chain rule of the forward definition) in the engine's floating point: every operation adds one unit
roundoff ``u`` of its result to the errors it inherits, so a sum that cancels keeps ``u`` times the size of its terms
(``docs/findings.md``, "The rounding floor"). An engine is then

- ``agrees``: relative Frobenius error against the arbiter within the tolerance table;
- ``lost digits``: off by more, but every entry within ``FLOOR_FACTOR * bound`` (plus one unit in the last place) of
  the truth: float64 cannot resolve the difference, it is below the rounding floor, not a bug;
- ``wrong``: some entry beyond the floor; the worst such entry is named.
"""

from dataclasses import dataclass, field

import numpy as np

from . import compare
from .errors import NonFiniteError

# Engines evaluate other formulas than the arbiter's (a closed-form Hessian, a shifted softmax). On the case table
# manual's entries stay within 0.44 bound, torch's and jax's within 0.4 except on the vanishing (9.6) and saturated
# tanh cases (3.6) (docs/findings.md, "The rounding floor"): 16 covers that with room.
FLOOR_FACTOR = 16.0
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}
AGREES, LOST_DIGITS, WRONG = "agrees", "lost digits (below the rounding floor)", "wrong"


@dataclass
class Judgement:
    """One engine against the arbiter: its relative error, its status and, unless it agrees, its worst entry."""

    engine: str
    error: float
    status: str
    detail: str = ""


@dataclass
class Verdict:
    """The arbiter's judgement of one call (``what``): the floor relative to the truth's norm, each engine's
    ``Judgement``, or ``note`` when the arbiter could not run (too large, a relu kink)."""

    what: str
    floor: float = float("nan")
    judgements: list = field(default_factory=list)
    note: str = ""
    largest_floor: float = float("nan")  # the largest entry of FLOOR_FACTOR * bound
    truth_norm: float = float("nan")

    @property
    def wrong(self):
        """Names of the engines whose error exceeds the rounding floor."""
        return [j.engine for j in self.judgements if j.status == WRONG]

    @property
    def lost_digits(self):
        return [j.engine for j in self.judgements if j.status == LOST_DIGITS]

    @property
    def decided(self):
        return not self.note

    def summary(self):
        """One line: who is wrong, or who lost digits below the floor, or that all are within rounding of the truth."""
        if self.note:
            return f"arbiter: no verdict ({self.note})"
        if self.wrong:
            return (
                f"arbiter: {', '.join(self.wrong)} {'is' if len(self.wrong) == 1 else 'are'} wrong "
                "(beyond the rounding floor)"
            )
        if self.lost_digits:
            return (
                f"arbiter: below the rounding floor; {', '.join(self.lost_digits)} lost digits that float64 cannot "
                "resolve here (a precision loss, not a bug); no engine is wrong"
            )
        return "arbiter: all engines are within rounding of the truth"

    def text(self, indent="  "):
        """The summary and one line per engine: error against the arbiter, status and worst entry."""
        lines = [self.summary()]
        if not self.note:
            lines.append(
                f"{indent}rounding floor of {self.what}: up to {self.largest_floor:.2e} per entry, "
                f"{self.floor:.2e} of the truth's norm {self.truth_norm:.2e}"
            )
        for j in self.judgements:
            lines.append(
                f"{indent}{j.engine:<10} error vs arbiter {j.error:.2e}: {j.status}"
                + (f"; {j.detail}" if j.detail else "")
            )
        return "\n".join(lines)


def _judge(name, values, truth, bound, tolerance):
    """The ``Judgement`` of ``values`` against the finite ``truth``: a NaN or an infinity is beyond any floor."""
    values = np.asarray(values, dtype=np.float64)
    error = compare.relative_error(values, truth)
    if error <= tolerance:
        return Judgement(name, error, AGREES)
    difference = compare.differences(values, truth)  # inf where a value is NaN or infinite
    allowed = FLOOR_FACTOR * bound + np.spacing(np.abs(truth))
    beyond = ~(difference <= allowed)
    excess = np.where(beyond, difference, -1.0) if beyond.any() else difference
    flat = int(np.argmax(excess))
    index = tuple(int(i) for i in np.unravel_index(flat, truth.shape)) if truth.ndim else ()
    entry = (
        f"at index {index}: {values[index]:.17g}, arbiter {truth[index]:.17g} "
        f"(|diff| {difference[index]:.2e}, floor {FLOOR_FACTOR * bound[index]:.2e})"
    )
    if beyond.any():
        return Judgement(name, error, WRONG, f"{int(beyond.sum())} entries beyond the floor, worst {entry}")
    return Judgement(name, error, LOST_DIGITS, f"worst {entry}")


def judge(call, results, tolerance, dtype="float64"):
    """The ``Verdict`` on ``call`` (a ``contract.Call``) for ``results`` (``{engine name: float64 array}``).

    ``tolerance``: the relative error within which an engine agrees. When the arbiter refuses (size limit, relu
    kink, mpmath missing) the verdict carries a ``note`` saying why and judges nobody."""
    try:
        from . import arbiter
    except ImportError as exc:  # mpmath missing
        return Verdict(call.label, note=f"the arbiter needs mpmath ({exc}); pip install mpmath")
    arguments = call.arguments
    if not callable(getattr(arbiter, call.quantity.name, None)):
        return Verdict(call.label, note=f"the arbiter does not compute {call.quantity.name}")
    results = {name: compare.flat_parts(values) for name, values in results.items()}  # (A, G) as one array
    try:
        truth = compare.flat_parts(arbiter.compute(call.quantity.name, call.net, *arguments))
        if all(compare.relative_error(values, truth) <= tolerance for values in results.values()):
            bound = np.zeros_like(truth)  # nobody to judge below the floor: skip its cost
        else:
            _, bound = arbiter.with_error_bound(call.quantity.name, call.net, *arguments, unit=UNIT_ROUNDOFF[dtype])
            bound = compare.flat_parts(bound)
    except (arbiter.ArbiterLimitError, arbiter.KinkError, arbiter.ArbiterPrecisionError, NonFiniteError) as exc:
        return Verdict(call.label, note=str(exc))  # NonFiniteError: the truth itself overflows the dtype
    if not (np.isfinite(truth).all() and np.isfinite(bound).all()):  # nothing finite to judge against
        return Verdict(call.label, note="the arbiter's value or its rounding floor is not finite here")
    scale = np.linalg.norm(truth)
    floor = float(FLOOR_FACTOR * np.linalg.norm(bound) / scale) if scale > 0 else float("inf")
    judgements = [_judge(name, values, truth, bound, tolerance) for name, values in results.items()]
    return Verdict(
        call.label,
        floor,
        judgements,
        largest_floor=float(FLOOR_FACTOR * np.max(bound, initial=0.0)),
        truth_norm=float(scale),
    )
