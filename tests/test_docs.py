"""The docs cannot drift: the README's generated sections equal what the code prints and what ``--help`` says
(``python -m benchmarks.readme`` rewrites them), and the examples degrade to a one-line note without an optional
package."""
import os
import subprocess
import sys

import pytest

from benchmarks import readme

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKER = """import os, sys
_blocked = set(os.environ["XVAL_TEST_BLOCK"].split(","))
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _blocked:
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, _Block())
"""


def test_generated_sections_equal_their_sources():
    generated = readme.sections()
    assert [line for path in readme.DOCUMENTS for line in readme.check_document(path, generated, rewrite=False)] == []


def test_a_changed_figure_is_found_and_rewritten():
    text = "intro\n<!-- generated: demo -->\n```\n0.1\n```\n<!-- end generated: demo -->\nrest\n"
    new, changed, unknown = readme.render(text, {"demo": "```\n0.2\n```\n"})
    assert changed == ["demo"] and unknown == []
    assert new == text.replace("0.1", "0.2")
    assert readme.render(new, {"demo": "```\n0.2\n```\n"})[1] == []


def test_flag_table_lists_every_option_with_its_help():
    from benchmarks.__main__ import build_parser

    table = readme.flag_table(build_parser())
    help_text = " ".join(build_parser().format_help().split())
    for action in build_parser()._actions[1:]:
        assert f"`{action.option_strings[0]}" in table
        assert " ".join(action.help.split()) in help_text


def run_example(script, blocked, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, XVAL_TEST_BLOCK=blocked, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    return subprocess.run([sys.executable, os.path.join("examples", script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize("script, blocked, column, kept", [
    ("compare_engines.py", "jax", "vs jax", "vs torch"),
    ("weight_space_symmetry.py", "torch", " torch:", "manual:"),
])
def test_an_example_without_an_engine_prints_a_note_and_goes_on(script, blocked, column, kept, tmp_path):
    done = run_example(script, blocked, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"pip install {blocked}" in notes[0]
    assert column not in done.stdout and kept in done.stdout


def test_the_sympy_example_without_sympy_says_what_to_install(tmp_path):
    done = run_example("activation_derivatives.py", "sympy", tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "pip install sympy" in done.stderr


def test_the_readme_torch_snippet_runs_as_printed():
    pytest.importorskip("torch")
    with open(readme.README) as handle:
        text = handle.read()
    start = text.index("```python\n", text.index("### Your torch model in and out")) + len("```python\n")
    namespace = {}
    exec(text[start:text.index("```", start)], namespace)  # noqa: S102 - the README's own code
    assert namespace["H"].shape == (131, 131) and namespace["net"].activations == ("tanh", "identity")
    assert [type(m).__name__ for m in namespace["model_again"]] == ["Linear", "Tanh", "Linear"]


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as handle:
        return handle.read()


def test_the_gpu_prose_quotes_the_committed_gpu_files():
    """The README's and docs' sentences about the GPU run (not generated) say what its committed files say."""
    import re

    gpu = os.path.join("benchmarks", "baseline", "gpu")
    readme_text, complexity = _read("README.md"), " ".join(_read("docs", "complexity.md").split())
    for log in ("tests.log", "tests-cupy.log"):
        passed = re.search(r"(\d+) passed", _read(gpu, log)).group(1)
        assert f"({passed} passed, [`{log}`]" in readme_text
    rates = {}
    for width, block in re.findall(r"width (\d+): block [\d.]+ GB\n((?:  .*\n)+)", _read(gpu, "write-rates.txt")):
        for what, median, rate in re.findall(r"  (.+?)\s+median\s+([\d.]+) ms .* ([\d.]+) TB/s", block):
            rates[int(width), what] = (float(median), float(rate))
    # cupy against torch for manual's block, and their write rates, as the prose quotes them.
    for width in (128, 192):
        on_cupy, on_torch = rates[width, "manual staged block on cupy"][0], rates[width, "manual staged block on torch"][0]
        assert f"{on_cupy:.2f}" in complexity and f"{on_torch:.2f}" in complexity
        assert 1.6 <= round(on_cupy / on_torch, 1) <= 1.7  # "took 1.6-1.7 times as long on cupy" in the README
    cupy_rates = [rates[w, what][1] for w in (128, 192) for what in ("cupy empty+fill", "cupy broadcast multiply out=")]
    torch_rates = [rates[w, what][1] for w in (128, 192) for what in ("torch empty+fill_", "torch broadcast mul out=")]
    cupy_text = f"{min(cupy_rates):.2f}-{max(cupy_rates):.2f} TB/s"
    torch_text = f"torch's {min(torch_rates):.1f}-{max(torch_rates):.1f} TB/s"
    readme_flat = " ".join(readme_text.split())
    assert f"cupy's elementwise kernels wrote {cupy_text}, {torch_text}" in complexity
    assert f"elementwise kernels wrote {cupy_text} on the H100 against {torch_text}" in readme_flat


def _ms_range(points, quantity, engine, skip=()):
    """``"lo-hi"`` in ms of an engine's width-sweep times (``skip``: widths quoted apart)."""
    times = [p["time_median_s"] * 1e3 for p in points if p["sweep"] == "width" and p["quantity"] == quantity
             and p["engine"] == engine and p["status"] == "ok" and p["width"] not in skip]
    return f"{min(times):.2f}-{max(times):.2f} ms"


def test_the_gpu_timing_ranges_quoted_are_the_baselines():
    import json

    with open(os.path.join(ROOT, "benchmarks", "baseline", "gpu", "results.json")) as handle:
        points = json.load(handle)["points"]
    complexity = " ".join(_read("docs", "complexity.md").split())
    readme_flat = " ".join(_read("README.md").split())
    outlier = [p for p in points if p["sweep"] == "width" and p["quantity"] == "gradient" and p["engine"] == "manual"
               and p["width"] == 512][0]["time_median_s"] * 1e3
    manual_gradient = _ms_range(points, "gradient", "manual", skip=(512,))
    manual_hvp = _ms_range(points, "hvp", "manual")
    assert (f"`manual`: {manual_gradient[:-3]} ms per gradient ({outlier:.2f} ms once, at width 512) and "
            f"{manual_hvp[:-3]} ms per hvp") in complexity
    assert (f"{manual_gradient} for a gradient ({outlier:.2f} ms once) and {manual_hvp} for an hvp") in readme_flat
    jax_gradient, jax_hvp = _ms_range(points, "gradient", "jax"), _ms_range(points, "hvp", "jax")
    assert f"jax: {jax_gradient[:-3]} ms per gradient and {jax_hvp[:-3]} ms per hvp" in complexity
    both = [jax_gradient, jax_hvp]
    assert f"one compiled program ({min(r.split('-')[0] for r in both)}-{max(r.split('-')[1][:-3] for r in both)} ms" in readme_flat
    torch_gradient, torch_hvp = _ms_range(points, "gradient", "torch"), _ms_range(points, "hvp", "torch")
    assert f"torch's eager autograd: {torch_gradient[:-3]} ms and {torch_hvp}" in complexity
    assert f"takes {torch_gradient[:-3]} and {torch_hvp}" in readme_flat


def test_the_cpu_baseline_machine_quoted_is_the_recorded_one():
    """The sentence that names the CPU baseline's machine and libraries says what its results.json recorded."""
    import json

    machine = json.loads(_read("benchmarks", "baseline", "results.json"))["machine"]
    complexity = " ".join(_read("docs", "complexity.md").split())
    start = complexity.index("The committed CPU baseline is one real default run")
    sentence = complexity[start:complexity.index("float64)", start)]
    kernels = {pool["architecture"] for pool in machine["blas_pools"] if pool.get("architecture")}
    assert machine["cpu_model"] in sentence and f"{machine['cpu_cores_logical']} cores" in sentence
    assert kernels and all(f"`{kernel}` kernel" in sentence for kernel in kernels)
    for name, label in [("numpy", "numpy"), ("torch", "torch"), ("jax", "jax")]:
        major_minor = ".".join(machine["libraries"][name].split(".")[:2])
        assert f"{label} {major_minor}" in sentence, (name, major_minor)
