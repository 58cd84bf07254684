"""What the failures of a check have in common, and what that points to.

``analyse(call, ours, theirs, tolerance)`` looks at one failing call: which parameter tensors are off
(``layer 0 W``) and how the engine's value relates to the reference's (negated, scaled by a factor, a weight
gradient laid out transposed, all zeros). ``diagnose(report)`` reads every row of a check and writes one paragraph:
which quantities, activations, losses, regimes, depths and layers fail and which pass, and where to look.
"""

import textwrap

import numpy as np

from . import compare


# The order of derivative each quantity needs: a bug in f shows in all of them, one in f' from "first" on, one in f''
# in "second" only.
def _quantity(name):
    from . import contract

    return contract.quantity(name)


def _order(name):
    """``value``, ``first`` or ``second``: the order of derivative a quantity needs (the contract's ``order``)."""
    return ("value", "first", "second")[_quantity(name).order]


ORDER_WORDS = {"value": "values", "first": "first-order quantities", "second": "second-order quantities"}


# ---- one failing call ---------------------------------------------------------------------------------------------
def _parameter_axes(call):
    kinds = compare.axes(call)
    return [] if kinds is None else [(axis, layer) for axis, (kind, layer) in enumerate(kinds) if kind == "parameter"]


def _tensor_spans(call, layer):
    """``[(label, layer, name, shape, start)]`` of the tensors along a parameter axis (of one layer, or all), with
    offsets along that axis."""
    base = 0 if layer is None else call.net.param_slices[layer].start
    spans = []
    for tensor_layer, name, shape, start in compare._layout(call.net):
        if layer is None or tensor_layer == layer:
            spans.append((f"layer {tensor_layer} {name}", tensor_layer, name, shape, start - base))
    return spans


def _transposition(call, axis, layer, span, array):
    """``array`` with the entries of the weight tensor ``span`` along ``axis`` read as the transpose (the layout of
    a gradient written ``(n_in, n_out)`` where the contract wants ``(n_out, n_in)``)."""
    _, _, _, shape, start = span
    rows, columns = shape
    order = np.arange(array.shape[axis])
    order[start : start + rows * columns] = start + np.arange(rows * columns).reshape(rows, columns).T.reshape(-1)
    return np.take(array, order, axis=axis)


def analyse(call, ours, theirs, tolerance):
    """``(tensors, relations)`` for one failing call: the labels of the parameter tensors whose entries are off
    (``layer 0 W``), and what relates ``ours`` to ``theirs``: ``negated``, ``scaled by 5`` (and ``= N``),
    ``zeros``, ``transposed layer 0 W``."""
    # a pair (kfac_factors' (A, G)) as one array, as compare reads it
    ours = np.asarray(compare.flat_parts(ours), dtype=np.float64)
    theirs = np.asarray(compare.flat_parts(theirs), dtype=np.float64)
    tensors, relations = set(), []
    for axis, layer in _parameter_axes(call):
        for span in _tensor_spans(call, layer):
            label, _, _, shape, start = span
            part = slice(start, start + int(np.prod(shape)))
            index = (slice(None),) * axis + (part,)
            if not compare.relative_error(ours[index], theirs[index]) <= tolerance:
                tensors.add(label)
    if not (np.isfinite(ours).all() and np.isfinite(theirs).all()):
        return sorted(tensors), ["not finite"]
    if not np.any(ours) and np.any(theirs):
        relations.append("zeros")
    elif compare.relative_error(ours, -theirs) <= tolerance:
        relations.append("negated")
    else:
        scale = float(np.vdot(ours, theirs) / np.vdot(theirs, theirs)) if np.any(theirs) else 0.0
        if scale and compare.relative_error(ours, scale * theirs) <= tolerance:
            n = call.arguments[0].shape[0] if call.arguments and hasattr(call.arguments[0], "shape") else None
            named = {n: " (= N)", 1 / n if n else None: " (= 1/N)"}.get(round(scale, 9), "") if n else ""
            relations.append(f"scaled by {scale:.6g}{named}")
    for _axis, layer in _parameter_axes(call)[:1]:
        for span in _tensor_spans(call, layer):
            label, _, name, shape, _ = span
            if name != "W" or min(shape) < 2 or label not in tensors:
                continue
            moved = theirs
            for other_axis, other_layer in _parameter_axes(call):
                if other_layer == layer:
                    moved = _transposition(call, other_axis, other_layer, span, moved)
            if compare.relative_error(ours, moved) <= tolerance:
                relations.append(f"transposed {label}")
    return sorted(tensors, key=tensor_order), relations


def tensor_order(label):
    _, layer, name = label.split()
    return int(layer), name != "W"


# ---- a whole check --------------------------------------------------------------------------------------------
def _join(words):
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1] if words else ""


def _cases_phrase(count, total):
    return "every case" if count == total else f"{count} of {total} cases"


def _layers_phrase(tensors):
    """``layer 0 W only`` style summary of tensor labels."""
    by_layer = {}
    for label in sorted(tensors, key=tensor_order):
        _, layer, name = label.split()
        by_layer.setdefault(int(layer), []).append(name)
    return "; ".join(f"layer {layer} {' and '.join(names)}" for layer, names in sorted(by_layer.items()))


def tensors_phrase(report, rows):
    """``every layer's W and b`` when each row's off entries cover all of its case's tensors, else which ones."""
    if all(set(row.tensors) >= set(report.cases[row.case].tensors) for row in rows if row.tensors):
        return "in every layer, W and b"
    return _layers_phrase(set().union(*(row.tensors for row in rows)))


def _common_factor(report, failing, passing):
    """What every failing case has and no passing case has: ``(kind, value, text)`` or ``None``."""
    info = report.cases
    activations = sorted({a for case in info.values() for a in case.activations if a != "identity"})
    for activation in activations:
        if all(activation in info[c].activations for c in failing) and not any(
            activation in info[c].activations for c in passing
        ):
            return "activation", activation, f"every failing case has a {activation} layer and no passing case has one"
    for loss in sorted({case.loss for case in info.values()}):
        if all(info[c].loss == loss for c in failing) and not any(info[c].loss == loss for c in passing):
            return "loss", loss, f"only {loss} cases fail"
    for tag in sorted({t for case in info.values() for t in case.tags}):
        if all(tag in info[c].tags for c in failing) and not any(tag in info[c].tags for c in passing):
            return "regime", tag, f"only the {tag} cases fail"
    if passing and min(info[c].depth for c in failing) > max(info[c].depth for c in passing):
        depth = min(info[c].depth for c in failing)
        return "depth", depth, f"only networks of {depth} or more layers fail"
    return None


def _pointer(bad, factor, relations, tensors, block_labels):
    """Where to look, from the failing quantities, what the failing cases share and how the values relate."""
    orders = {_order(q) for q in bad}
    transposed = sorted({r.split(" ", 1)[1] for r in relations if r.startswith("transposed ")})
    if transposed:
        return (
            f"a transposed weight gradient ({_join(transposed)} at transposed positions, as if written "
            "(n_in, n_out), where the contract lays W_l out (n_out, n_in) row-major: delta_l z_l^T)"
        )
    if any(r.endswith("(= N)") or r.endswith("(= 1/N)") for r in relations):
        return "a factor N: a sum where a mean belongs or the reverse (only per_sample_gradients are not divided by N)"
    if "not finite" in relations:
        return "the engine returns NaN or infinite values where the references are finite (an overflow, 0/0, log 0)"
    if "negated" in relations:
        return "a sign error"
    if "zeros" in relations:
        return "the engine returns zeros"
    kind, value = (factor or (None, None, None))[:2]
    if kind == "activation":
        if orders == {"second"}:
            return f"look at {value}'' (the second derivative of {value})"
        if "value" in orders:
            return f"look at {value} itself, in the forward pass (everything else is computed from it)"
        return f"look at {value}' (its first derivative, in backprop); the second-order quantities build on it"
    if kind == "loss":
        what = {
            "value": "the loss formula",
            "first": "its derivative in the outputs",
            "second": "its second derivative in the outputs (its Hessian)",
        }
        return f"look at the {value} loss: " + what.get(min(orders, key=list(ORDER_WORDS).index), "its formulas")
    if kind == "regime":
        return f"look at how large or tiny values are handled ({value}): overflow, cancellation or a clipped range"
    if kind == "depth":
        return "look at how delta passes back through a hidden layer (W_{l+1}^T delta_{l+1} times f'(a_l))"
    if block_labels and all(l != m for l, m in block_labels):
        return "only blocks between two different layers fail: look at the cross-layer terms of hessian_block"
    if tensors and all(label.endswith(" b") for label in tensors):
        return "only bias entries are off: look at the bias terms"
    if orders == {"second"}:
        return "first derivatives are right: look at the second-order terms"
    if all(_order(q) == "value" and not _quantity(q).axes for q in bad):  # only the loss, a value without axes
        return "the outputs agree, so look at the loss formula and the batch mean E = (1/N) sum_n loss_n"
    if any(_order(q) == "value" and _quantity(q).axes for q in bad):  # the outputs themselves
        return "the forward pass is off, and everything else is computed from it: fix it first"
    if orders == {"first"}:
        return "the values agree: look at backprop (delta_l, and the outer products delta_l z_l^T)"
    return ""


def diagnose(report):
    """One paragraph on the failures of ``report`` (a ``check.Report``): what fails and passes, what the failing
    cases share, which layers are off, and where to look; ``""`` when nothing failed."""
    rows = [row for row in report.rows if row.status != "not implemented"]
    bad_rows = [row for row in rows if row.status in ("fail", "error")]
    if not bad_rows:
        return ""
    total = len(report.cases)
    bad = list(dict.fromkeys(row.quantity for row in bad_rows))
    # only what passed everywhere: a row no reference computed ("not checked") or one the engine refused is no pass
    good = [
        q
        for q in dict.fromkeys(row.quantity for row in rows)
        if q not in bad and all(row.status == "pass" for row in rows if row.quantity == q)
    ]
    failing_cases = list(dict.fromkeys(row.case for row in bad_rows))
    passing_cases = [
        case
        for case in report.cases
        if case not in failing_cases
        and any(row.case == case and row.quantity in bad and row.status == "pass" for row in rows)
    ]
    sentences = []
    groups = {}
    for quantity in bad:
        cases = tuple(row.case for row in bad_rows if row.quantity == quantity)
        raised = all(row.status == "error" for row in bad_rows if row.quantity == quantity)
        groups.setdefault((cases, raised), []).append(quantity)
    parts = [
        f"{_join(quantities)} {'raise' if raised else 'fail'}{'s' if len(quantities) == 1 else ''} on "
        f"{_cases_phrase(len(cases), total)}"
        for (cases, raised), quantities in groups.items()
    ]
    sentences.append(_join(parts))
    if good:
        sentences.append(f"{_join(good)} pass{'es' if len(good) == 1 else ''} on every case")
    factor = _common_factor(report, failing_cases, passing_cases) if passing_cases else None
    if factor:
        sentences.append(factor[2])
    elif len(failing_cases) == total:
        sentences.append("the failures do not depend on the case")
    tensors = set().union(*(row.tensors for row in bad_rows))
    relations = [relation for row in bad_rows for relation in row.relations]
    if tensors:
        sentences.append(f"entries off: {tensors_phrase(report, bad_rows)}")
    transposed = [r for r in relations if r.startswith("transposed ")]
    if transposed and passing_cases:
        layer = int(transposed[0].split()[2])
        if all(min(report.cases[c].sizes[layer : layer + 2]) == 1 for c in passing_cases):
            sentences.append(
                f"the cases that pass have a layer {layer} W with one row or column, which reads the same transposed"
            )
    sentences.append(f"all in {report.dtype}")
    text = "; ".join(sentences) + "."
    orders = {_order(q) for q in bad}
    summary = []
    if factor and factor[0] == "activation":
        summary.append(f"only {factor[1]} cases")
    elif factor:
        summary.append(factor[2])
    if orders <= set(ORDER_WORDS) and good:
        summary.append(
            "only " + " and ".join(ORDER_WORDS[o] for o in ORDER_WORDS if o in orders) + f" ({', '.join(bad)})"
        )
    blocks = [
        tuple(int(x) for x in label[label.index("(") + 1 : -1].split(","))
        for row in bad_rows
        for label in row.failed_calls
        if label.startswith("hessian_block(")
    ]
    if all(row.status == "error" for row in bad_rows):
        pointer = "they raise rather than return a value: the first message of each is under failures above"
    else:
        pointer = _pointer(
            [row.quantity for row in bad_rows if row.status == "fail"], factor, relations, tensors, blocks
        )
    if pointer:
        lead = ", ".join(summary)
        text += f" {lead[0].upper()}{lead[1:]}: {pointer}." if lead else f" {pointer[0].upper()}{pointer[1:]}."
    return "diagnosis: " + text


def wrap(paragraph, width=118):
    """The paragraph wrapped for a terminal, continuation lines indented by two spaces."""
    return textwrap.fill(paragraph, width=width, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)
