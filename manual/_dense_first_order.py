"""Forward pass, loss, backprop gradient and per-sample gradients, written out.

Notation (DESIGN.md): ``a_l = W_l z_l + b_l``, ``z_{l+1} = f_l(a_l)``, ``z_0 = x``,
``delta_l = d loss_n / d a_l`` per sample. The objective is ``E = (1/N) sum_n loss_n``.

Every function has a ``stage_<name>`` twin taking the same arguments (the references' convention): it checks
them, places the network and data in the array library ``XVAL_ARRAY`` selects (``manual.arrays``) once, and returns
a zero-argument function computing the quantity there, whose result stays an array of that library. The contract
function is the staged computation brought back as float64 numpy. Results are written once, straight into their
final flat array.
"""

from xval.checks import check_data, check_inputs

from . import arrays
from .activations import get_activation
from ._prepared import guard, prepare


# ---- the passes, on a prepared model (``manual.staged.Model``) ---------------------------------------------
def forward_values(model, X, keep_pre=False, slopes=True):
    """``(z, d1, a)``: activations ``z`` (``z[0] = X``, ``z[l+1] = f_l(a_l)``, ``(N, n_l)``), slopes
    ``d1[l] = f_l'(a_l)`` (``None`` unless ``slopes``) and, when ``keep_pre``, the pre-activations ``a[l]`` (else
    ``None``)."""
    xp, dot = model.xp, model.dot
    z, d1, a = [X], [] if slopes else None, [] if keep_pre else None
    for wT, b, act in zip(model.weights_t, model.biases, model.acts):
        pre = dot(z[-1], wT)
        pre += b
        if slopes:
            value, slope = act.value_and_slope(pre, xp)
            d1.append(slope)
        else:
            value = act.f(pre, xp)
        z.append(value)
        if keep_pre:
            a.append(pre)
    return z, d1, a


def backward_values(model, z, d1, Y):
    """``delta[l] = d loss_n / d a_l``, ``(N, n_{l+1})`` per layer, for every sample ``n`` (not divided by N).

    ``delta_L = f_L'(a_L) * dloss/dy_hat``;  ``delta_l = f_l'(a_l) * (delta_{l+1} W_{l+1})``.
    """
    last, dot = model.n_layers - 1, model.dot
    delta = [None] * model.n_layers
    delta[last] = d1[last] * model.loss.grad(z[-1], Y, model.xp)
    for l in range(last - 1, -1, -1):
        back = dot(delta[l + 1], model.weights[l + 1])
        back *= d1[l]
        delta[l] = back
    return delta


def gradient_values(model, X, Y):
    """``dE/dtheta``, ``(P,)`` in the model's library, written once: per layer ``(1/N) sum_n delta_l z_l^T``
    (row-major), then ``(1/N) sum_n delta_l``."""
    z, d1, _ = forward_values(model, X)
    delta = backward_values(model, z, d1, Y)
    lib, n = model.lib, X.shape[0]
    out = lib.empty((model.n_params,), model.dtype)
    for l, (start, split, end) in enumerate(model.bounds):
        # Scaling delta (N, n_{l+1}), not the (n_{l+1}, n_l) product, saves a pass over the weights.
        scaled = delta[l] / n if n > 1 else delta[l]
        lib.product(out, slice(start, split), model.shapes[l], scaled.T, z[l])  # one sample: an outer product
        out[split:end] = scaled[0, ...] if n == 1 else model.xp.sum(scaled, axis=0)
    return out


# Per-sample gradients from this many output bytes on are written one sample at a time, each output row whole before
# the next: on fresh memory that order beats layer by layer by ~13% (measured at width 256, N = 32: 22.7 vs 26.1 ms,
# numpy writing an array of that size 16.4 ms); below it, the loop over samples would cost more than it saves.
ROW_ORDER_BYTES = 4 * 2**20


def per_sample_values(model, X, Y):
    """``d loss_n / dtheta``, ``(N, P)`` in the model's library: per layer the outer products ``delta_l[n] z_l[n]^T``
    (``Library.outer``) written straight into the output's columns, then ``delta_l``; for the whole batch at once,
    or, when the output is large (``ROW_ORDER_BYTES``), sample by sample (on numpy split over the write threads:
    ``_numpy_sample_rows``)."""
    lib, n = model.lib, X.shape[0]
    nbytes = n * model.n_params * model.dtype.itemsize
    by_sample = n > 1 and nbytes >= ROW_ORDER_BYTES
    products = 4 * n * sum(w * v for w, v in zip(model.sizes, model.sizes[1:]))  # forward and backward
    with arrays.quiet_blas(lib, nbytes if by_sample else 0, products):
        z, d1, _ = forward_values(model, X)
        delta = backward_values(model, z, d1, Y)
    for l in range(model.n_layers):
        lib.report_outer_overflow(delta[l], z[l])
    out = lib.empty((n, model.n_params), model.dtype)
    if by_sample and lib.name == "numpy":
        return _numpy_sample_rows(model, out, z, delta, nbytes)

    def write(rows):
        for l, (start, split, end) in enumerate(model.bounds):
            lib.outer(out, (rows, slice(start, split)), delta[l][rows, ...], z[l][rows, ...])
            out[rows, split:end] = delta[l][rows, ...]

    for rows in [slice(i, i + 1) for i in range(n)] if by_sample else [slice(None)]:
        write(rows)
    return out


def _numpy_sample_rows(model, out, z, delta, nbytes):
    """``per_sample_values``' rows on numpy, sample by sample over the write threads: per layer the outer product
    ``delta_l[n] z_l[n]^T`` written into its slice of the row (``arrays.numpy_outer``, as ``Library.outer`` writes
    short rows), then ``delta_l[n]``. The calls go straight to numpy with
    the ufunc buffer set once for all of them (``arrays.buffer_of_rows``): through ``Library.outer`` the same writes
    took 15.8 ms against 13.0 at width 256, N = 32 (fresh output, two threads; numpy writing an array of that size on
    two threads 10.6-11.4 ms)."""
    layers = [(model.shapes[l], bounds, z[l], delta[l]) for l, bounds in enumerate(model.bounds)]
    long_rows = [n_in for _, n_in in model.shapes if n_in >= arrays.EINSUM_ROW]

    def samples(first, stop):
        for i in range(first, stop):
            row = out[i]
            for shape, (start, split, end), z_l, delta_l in layers:
                arrays.numpy_outer(row[start:split].reshape(shape), delta_l[i], z_l[i])
                row[split:end] = delta_l[i]

    with arrays.buffer_of_rows(min(long_rows, default=0)):
        arrays.split(out.shape[0], samples, nbytes)
    return out


# ---- staged calls and the contract ----------------------------------------------------------------------------
def stage_forward(net, X):
    """``forward`` staged: the outputs ``(N, n_L)`` as an array of the selected library."""
    X = check_inputs(net, X)
    guard(net, "forward", X.shape[0])
    model = prepare(net)
    X = model.asarray(X)
    return model.staged(lambda: forward_values(model, X, slopes=False)[0][-1])


def stage_loss(net, X, Y):
    """``loss`` staged: ``E`` as a 0-d array of the selected library."""
    X, Y = check_data(net, X, Y)
    guard(net, "loss", X.shape[0])
    model, X, Y = prepare(net).data(X, Y)
    return model.staged(
        lambda: model.xp.mean(model.loss.value(forward_values(model, X, slopes=False)[0][-1], Y, model.xp))
    )


def stage_gradient(net, X, Y):
    """``gradient`` staged: ``(P,)`` as an array of the selected library."""
    X, Y = check_data(net, X, Y)
    guard(net, "gradient", X.shape[0])
    model, X, Y = prepare(net).data(X, Y)
    return model.staged(lambda: gradient_values(model, X, Y))


def _per_sample_inputs(net, X, Y):
    """The prepared model and data, after the data checks and the memory guard of the ``(N, P)`` result."""
    X, Y = check_data(net, X, Y)
    guard(net, "per_sample_gradients", X.shape[0])
    return prepare(net).data(X, Y)


def stage_per_sample_gradients(net, X, Y):
    """``per_sample_gradients`` staged: ``(N, P)`` as an array of the selected library."""
    model, X, Y = _per_sample_inputs(net, X, Y)
    return model.staged(lambda: per_sample_values(model, X, Y))


# ---- numpy passes for the analyses ------------------------------------------------------------------------------
def forward_pass(net, X):
    """Pre-activations ``a`` (``a[l]`` is ``(N, n_{l+1})``) and activations ``z`` (``z[0] = X``, ``z[l+1] = f_l(a[l])``)
    on numpy, for the analyses (diagnose, finite differences). ``net`` is anything with ``weights``, ``biases`` and
    ``activations`` (finite differences perturbs copies in place, so nothing is cached); ``X`` is validated."""
    a, z = [], [X]
    for w, b, name in zip(net.weights, net.biases, net.activations):
        a.append(z[-1] @ w.T + b)
        z.append(get_activation(name).f(a[-1]))
    return a, z


def _estimate(factor, first_call):
    """The memory model of a dense call: ``factor`` over (tape + result) and ``first_call`` bytes besides."""

    def estimate(net, n_samples, **args):
        from xval import contract, memory

        name = estimate.quantity
        return sum(memory.peak_parts(contract.quantity(name), net, n_samples, args, factor, first_call))

    return estimate


# A few activations and parameter vectors; per-sample gradients hold numpy's iterator buffers too (0.2-0.3 MiB
# whatever the size).
for _stage, _model in (
    (stage_forward, (4.0, 0)),
    (stage_loss, (4.0, 0)),
    (stage_gradient, (4.0, 0)),
    (stage_per_sample_gradients, (1.2, 2**19)),
):
    _stage.estimate = _estimate(*_model)
    _stage.estimate.quantity = _stage.__name__[len("stage_") :]
