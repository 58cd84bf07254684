"""Throw the catalogue of malformed calls (``tests/malformed.py``) at every public function of the three engines
and count the outcomes: documented errors, raw exceptions, silent NaN/Inf, silently accepted input, wrong results
for equivalent input, mutated inputs. ``python scripts/probe_inputs.py [-v]`` (``-v`` lists each failure)."""

import os
import sys
import warnings
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the catalogue lives in tests/
import manual  # noqa: E402
from tests import malformed  # noqa: E402
from xval import engines  # noqa: E402

warnings.filterwarnings("ignore")


def main(verbose=False):
    counts, failures = Counter(), []
    for name in ("manual", "torch", "jax"):
        engine = engines.load(name)
        for function in malformed.SIGNATURES:
            call = getattr(engine, function)
            for variant in malformed.VARIANTS:
                if not malformed.applicable(function, variant):
                    continue
                valid, bad, same = malformed.arguments(function, variant, malformed.float32_arguments_for(variant))
                equivalent = (lambda s=same: call(*s)) if same else None
                verdict, detail = malformed.outcome(lambda b=bad: call(*b), variant.expect, equivalent, bad)
                counts[verdict] += 1
                if verdict not in ("ok", "documented"):
                    failures.append(f"{name}.{function} {variant.argument}={variant.label}: {verdict} {detail}")
    for label, thunk, expect in malformed.extra_calls(manual):
        verdict, detail = malformed.outcome(thunk, expect)
        counts[verdict] += 1
        if verdict not in ("ok", "documented"):
            failures.append(f"{label}: {verdict} {detail}")
    for label in malformed.mutation_attempts(None):
        net = malformed.valid_arguments()["net"]
        before = net.to_vector()
        try:
            malformed.mutation_attempts(net)[label]()
            verdict = "silently accepted"
        except Exception:  # noqa: BLE001
            verdict = "documented"
        try:
            kept = np.array_equal(net.to_vector(), before)
        except Exception:  # noqa: BLE001
            kept = False
        verdict = verdict if kept else "mutated input"
        counts[verdict] += 1
        if verdict != "documented":
            failures.append(f"Network {label}: {verdict}")
    if verbose:
        print("\n".join(failures))
    total = sum(counts.values())
    print(f"{total} calls: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main("-v" in sys.argv))
