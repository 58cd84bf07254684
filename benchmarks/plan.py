"""What a run measures: a width sweep at fixed depth and a depth sweep at fixed width, with the sizes each
quantity goes up to (chosen so that the default run stays within five minutes on two cores, about two and a half
with the ratio rows, and ``--quick`` well under one).

``|W|`` of a network of ``depth`` layers of equal ``width`` is ``depth * (width**2 + width)``.
"""
from dataclasses import dataclass, field, replace

from .quantities import MANUAL_ONLY, PEER_QUANTITIES, QUANTITIES


@dataclass(frozen=True)
class Sweep:
    name: str            # "width" or "depth"
    fixed: int           # the fixed depth (width sweep) or width (depth sweep)
    values: tuple        # the widths or depths swept
    limits: dict = field(default_factory=dict)  # quantity -> largest value swept for it (default: all)
    engine_limits: dict = field(default_factory=dict)  # (quantity, engine) -> largest value
    start: int = 0       # the smallest value swept, unless ``starts`` names another for the quantity
    starts: dict = field(default_factory=dict)  # quantity -> smallest value

    def sizes(self, value):
        """Layer widths ``[n_0, ..., n_L]`` of the network at ``value``."""
        width, depth = (value, self.fixed) if self.name == "width" else (self.fixed, value)
        return [width] * (depth + 1)

    def values_for(self, quantity, engine=None):
        limit = self.engine_limits.get((quantity, engine), self.limits.get(quantity))
        start = self.starts.get(quantity, self.start)
        return tuple(v for v in self.values if (limit is None or v <= limit) and v >= start)


# Cheap quantities go to width 1024 (|W| = 3.1e6); the dense ones stop where a point costs over a second or
# so. Widths from 2 only where the largest size is small (finite differences, the full Hessian), to keep two
# decades. Peers stop earlier: curvlinops takes seconds per block at width 64.
DEFAULT = (
    Sweep("width", 3, (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), start=4,
          starts={"finite_difference_gradient": 2, "hessian": 2},
          limits={"finite_difference_gradient": 64, "per_sample_gradients": 256, "hessian_block": 64, "hessian": 32},
          engine_limits={("hessian_block", "curvlinops"): 32}),
    Sweep("depth", 16, (1, 2, 4, 8, 16, 32, 64),
          limits={"finite_difference_gradient": 4, "hessian_block": 16, "hessian": 8},
          engine_limits={("hessian_block", "curvlinops"): 8, ("hessian", "torch"): 4}),
)

# A GPU run (``--device cuda``) goes further where the GPU's memory and speed allow, and reaches the sizes of the GPU
# rows (``benchmarks.gpu_rows``): the same-layer block at widths 128 and 192 (an 11 GB float64 block), per-sample
# gradients to width 1024. BackPACK needs an identity the size of the block besides it, and curvlinops applies the
# operator column by column, so they stop earlier.
GPU = (
    replace(DEFAULT[0], values=(2, 4, 8, 16, 32, 64, 128, 192, 256, 512, 1024),
            limits={"finite_difference_gradient": 64, "hessian_block": 192, "hessian": 32},
            engine_limits={("hessian_block", "curvlinops"): 32, ("hessian_block", "backpack"): 128}),
    DEFAULT[1],
)

# The smoke test: every quantity, engine and code path, on sizes small enough for well under a minute
# (most of it is jax compiling one function per architecture and quantity).
QUICK = (
    Sweep("width", 2, (4, 8, 16), limits={"finite_difference_gradient": 8, "hessian": 8}),
    Sweep("depth", 6, (1, 2, 3), limits={"finite_difference_gradient": 1, "hessian": 2},
          engine_limits={("hessian_block", "backpack"): 2, ("hessian_block", "curvlinops"): 2}),
)


def sweeps(quick=False, device="cpu"):
    """The sweeps of a run: ``QUICK`` with ``--quick``, else ``GPU`` on ``cuda`` and ``DEFAULT`` on the CPU."""
    if quick:
        return QUICK
    return GPU if device == "cuda" else DEFAULT


def plan(engines, quick=False, quantities=QUANTITIES, peers=(), device="cpu"):
    """``[(sweep, value, quantity, engine names)]`` in the order they run: by sweep, then size, then quantity.

    ``finite_difference_gradient`` runs on ``manual`` only; ``peers`` join ``hessian_block``.
    """
    out = []
    for sweep in sweeps(quick, device):
        for value in sweep.values:
            for quantity in quantities:
                names = ["manual"] if quantity in MANUAL_ONLY else list(engines)
                if quantity in PEER_QUANTITIES:
                    names += list(peers)
                names = [name for name in names if name in engines or name in peers]
                names = [name for name in names if value in sweep.values_for(quantity, name)]
                if names:
                    out.append((sweep, value, quantity, names))
    return out
