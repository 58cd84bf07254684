"""What a run measures: a width sweep at fixed depth and a depth sweep at fixed width of an MLP, and a channels sweep
of a small convolutional network (``benchmarks.networks``), each with the quantities it measures and the size each
goes up to.

The sizes are data about a run, not facts about a quantity: they keep the default run within about five minutes on
two cores with the ratio rows (``--quick`` well under one), so each quantity stops where one call costs about a
second on such a machine. The expected slopes give how fast a series grows, but not its constant (an engine may be
100x off another at the same slope), so they cannot place a limit alone; the runner also stops a series once a call
takes over ``--max-call-seconds``. Everything else about a quantity (dense, timed on a batch, its expected slope) is
the contract's (``xval.contract.Quantity``).

``|W|`` of an MLP of ``depth`` layers of equal ``width`` is ``depth * (width**2 + width)``; of the convolutional
network, ``networks.conv_parameters(channels)``.
"""

from dataclasses import dataclass, field, replace

from . import networks

# What the MLP sweeps measure, in the order they run and are printed: the contract's quantities, with the
# central-difference oracle after the gradient. top_eigenvalues is left out: manual switches from the dense Hessian
# to Lanczos at 2000 parameters, so its time is no single power law; hessian_trace is hessian_diagonal's sum.
MLP_QUANTITIES = (
    "forward",
    "gradient",
    "finite_difference_gradient",
    "per_sample_gradients",
    "hvp",
    "hessian_block",
    "hessian",
    "ggnvp",
    "ggn_diagonal",
    "hessian_diagonal",
    "kfac_factors",
    "output_jacobian",
    "empirical_fisher",
    "ggn",
)
# What the channels sweep measures (the convolutional network).
CONV_QUANTITIES = ("forward", "gradient", "per_sample_gradients", "hvp", "ggn_diagonal", "hessian_diagonal")
QUANTITIES = tuple(dict.fromkeys(MLP_QUANTITIES + CONV_QUANTITIES))
# Their peak memory is judged against P N n_L entries (the per-sample output rows of every parameter, which an
# exact diagonal may hold but never a P x P array).
MEMORY_BOUNDED = ("ggn_diagonal", "hessian_diagonal")
MEMORY_BOUND_FACTOR = 4.0  # "a few times"
# A point is judged when its bound is at least MEMORY_BOUND_MIN_BYTES (below, a call's fixed allocations and whole
# pages outweigh it), or its peak at least MEMORY_PEAK_MIN_BYTES (far beyond any fixed cost of a call).
MEMORY_BOUND_MIN_BYTES = 1 << 20
MEMORY_PEAK_MIN_BYTES = 16 << 20


@dataclass(frozen=True)
class Sweep:
    name: str  # "width", "depth" or "channels"
    fixed: int  # the fixed depth (width and channels sweeps) or width (depth sweep)
    values: tuple  # the widths, depths or channel counts swept
    quantities: tuple = MLP_QUANTITIES  # what it measures
    limits: dict = field(default_factory=dict)  # quantity -> largest value swept for it (default: all)
    engine_limits: dict = field(default_factory=dict)  # (quantity, engine) -> largest value
    start: int = 0  # the smallest value swept, unless ``starts`` names another for the quantity
    starts: dict = field(default_factory=dict)  # quantity -> smallest value

    def sizes(self, value):
        """The layer widths ``[n_0, ..., n_L]`` of the MLP at ``value``; for the channels sweep the channels of the
        input and of each convolution, then the outputs."""
        if self.name == "channels":
            return [value] * (self.fixed + 1) + [networks.CONV_OUTPUTS]
        width, depth = (value, self.fixed) if self.name == "width" else (self.fixed, value)
        return [width] * (depth + 1)

    def shape(self, value):
        """``(width, depth)`` of the network at ``value`` (for the channels sweep: channels, convolutions)."""
        return (self.fixed, value) if self.name == "depth" else (value, self.fixed)

    def n_params(self, value):
        """``|W|`` of the network at ``value``."""
        if self.name == "channels":
            return networks.conv_parameters(value, depth=self.fixed)
        sizes = self.sizes(value)
        return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))

    def network(self, value, dtype="float64"):
        if self.name == "channels":
            return networks.conv(value, depth=self.fixed, dtype=dtype)
        return networks.mlp(self.sizes(value), dtype)

    def values_for(self, quantity, engine=None):
        if quantity not in self.quantities:
            return ()
        limit = self.engine_limits.get((quantity, engine), self.limits.get(quantity))
        start = self.starts.get(quantity, self.start)
        return tuple(v for v in self.values if (limit is None or v <= limit) and v >= start)


# Cheap quantities go to width 1024 (|W| = 3.1e6); the dense ones, and those that carry n_L output rows of every
# parameter, stop where a point costs about a second. Widths from 2 only where the largest size is small, to keep two
# decades. Peers stop earlier: curvlinops takes seconds per block at width 64.
WIDTH_LIMITS = {
    "finite_difference_gradient": 64,
    "per_sample_gradients": 256,
    "hessian_block": 64,
    "hessian": 32,
    "ggn_diagonal": 128,
    "hessian_diagonal": 128,
    "kfac_factors": 512,
    "output_jacobian": 32,
    "empirical_fisher": 32,
    "ggn": 32,
}
WIDTH_STARTS = {
    "finite_difference_gradient": 2,
    "hessian": 2,
    "output_jacobian": 2,
    "empirical_fisher": 2,
    "ggn": 2,
    "ggn_diagonal": 2,  # two decades below the references' limit (reference_diagonals)
    "hessian_diagonal": 2,
}


def reference_diagonals(limit):
    """Engine limits: the references read a diagonal off ``P`` unit-vector products (torch 64 at a time, jax one at
    a time), minutes a call at ``|W|`` of 10^4 (torch's GGN diagonal of the channels-16 network: over 100 s), so they
    stop at ``limit``."""
    return {
        (quantity, engine): limit for quantity in ("hessian_diagonal", "ggn_diagonal") for engine in ("torch", "jax")
    }


DEFAULT = (
    Sweep(
        "width",
        3,
        (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        start=4,
        starts=WIDTH_STARTS,
        limits=WIDTH_LIMITS,
        # curvlinops' type-2 KFAC backpropagates the n_L output rows one at a time: 4 s a call at width 512
        engine_limits={
            ("hessian_block", "curvlinops"): 32,
            ("hessian_diagonal", "backpack"): 64,
            ("kfac_factors", "curvlinops"): 64,
            ("ggnvp", "curvlinops"): 256,
            **reference_diagonals(32),
        },
    ),
    Sweep(
        "depth",
        16,
        (1, 2, 4, 8, 16, 32, 64),
        limits={"finite_difference_gradient": 4, "hessian_block": 16, "hessian": 8, "empirical_fisher": 8, "ggn": 4},
        engine_limits={
            ("hessian_block", "curvlinops"): 8,
            ("hessian", "torch"): 4,
            ("hessian_diagonal", "backpack"): 16,
            ("output_jacobian", "torch"): 16,
            **reference_diagonals(4),
        },
    ),
    Sweep(
        "channels",
        networks.CONV_DEPTH,
        (2, 4, 8, 16, 32, 64),
        quantities=CONV_QUANTITIES,
        # manual's Hessian diagonal of the 64-channel network takes 9 s a call (4,096 columns per activation layer)
        limits={"per_sample_gradients": 32, "hessian_diagonal": 32},
        engine_limits=reference_diagonals(4),
    ),
)

# A GPU run (``--device cuda``) goes further where the GPU's memory and speed allow, and reaches the sizes of the GPU
# rows (``benchmarks.gpu_rows``): the same-layer block at widths 128 and 192 (an 11 GB float64 block), per-sample
# gradients to width 1024. BackPACK needs an identity the size of the block besides it, and curvlinops applies the
# operator column by column, so they stop earlier.
GPU = (
    replace(
        DEFAULT[0],
        values=(2, 4, 8, 16, 32, 64, 128, 192, 256, 512, 1024),
        limits={**WIDTH_LIMITS, "hessian_block": 192, "per_sample_gradients": None},
        engine_limits={**DEFAULT[0].engine_limits, ("hessian_block", "backpack"): 128},
    ),
    DEFAULT[1],
    DEFAULT[2],
)

# The smoke test: every quantity, engine and code path, on sizes small enough for well under a minute
# (most of it is jax compiling one function per architecture and quantity).
QUICK = (
    Sweep(
        "width", 2, (4, 8, 16), limits={"finite_difference_gradient": 8, "hessian": 8, "empirical_fisher": 8, "ggn": 8}
    ),
    Sweep(
        "depth",
        6,
        (1, 2, 3),
        limits={"finite_difference_gradient": 1, "hessian": 2},
        engine_limits={("hessian_block", "backpack"): 2, ("hessian_block", "curvlinops"): 2},
    ),
    Sweep("channels", networks.CONV_DEPTH, (2, 3, 4), quantities=CONV_QUANTITIES),
)


def network_of(sweep, sizes, dtype="float64"):
    """The network of a recorded point: its sweep's name and ``sizes`` (``Sweep.sizes``)."""
    if sweep == "channels":
        return networks.conv(sizes[0], depth=len(sizes) - 2, dtype=dtype)
    return networks.mlp(sizes, dtype)


def sweeps(quick=False, device="cpu"):
    """The sweeps of a run: ``QUICK`` with ``--quick``, else ``GPU`` on ``cuda`` and ``DEFAULT`` on the CPU."""
    if quick:
        return QUICK
    return GPU if device == "cuda" else DEFAULT


def _everything(engine, quantity):
    return True


def plan(engines, quick=False, quantities=QUANTITIES, peers=(), device="cpu", provides=_everything):
    """``[(sweep, value, quantity, engine names)]`` in the order they run: by sweep, then size, then quantity.

    An engine or peer joins a quantity when ``provides(name, quantity)`` (by default every one does): the engines
    that implement its function, the peers that have a staged call for it (``benchmarks.peers``).
    """
    out = []
    for sweep in sweeps(quick, device):
        for value in sweep.values:
            for quantity in quantities:
                names = [name for name in list(engines) + list(peers) if provides(name, quantity)]
                names = [name for name in names if value in sweep.values_for(quantity, name)]
                if names:
                    out.append((sweep, value, quantity, names))
    return out


def left_out(engines, quantities=QUANTITIES, provides=_everything):
    """``{quantity: [engines]}``: the engines a run leaves out of a quantity because they do not provide it."""
    out = {}
    for quantity in quantities:
        missing = [name for name in engines if not provides(name, quantity)]
        if missing:
            out[quantity] = missing
    return out
