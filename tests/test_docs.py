"""The docs cannot drift: their generated sections hold their sources (letter for letter when made from committed
files and code, by structure and tolerance when printed by a run: ``benchmarks.readme.drift``), every relative link
resolves, the README stays short and says how an engine reads the network, and the examples degrade to a one-line
note without an optional package. ``python -m benchmarks.readme`` regenerates every generated part."""

import json
import os
import re
import subprocess
import sys
from collections import defaultdict

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


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as handle:
        return handle.read()


def _sections():
    found = defaultdict(list)
    for path in readme.documents():
        for part in readme.parts(path):
            if part.command is None:
                found[part.name].append(part)
    return found


SECTIONS = _sections()


@pytest.fixture(scope="module")
def sources():
    return readme.Sources()


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_each_generated_section_holds_its_source(name, sources):
    problems = [readme.check_part(part, sources) for part in SECTIONS[name]]
    assert [problem for problem in problems if problem] == []


def test_every_source_stands_in_some_document():
    assert readme.unplaced(readme.documents(), readme.sources()) == []
    assert {"compare-engines-output", "minimal-engine"} <= {part.name for part in readme.parts(readme.README)}


# ---- the tolerant comparison, on outputs built to differ in one way each -------------------------------------
DOCUMENTED = """check of engine minimal_engine.py against manual, torch, jax (float64)
  quantity                vs manual    vs torch      vs jax  result
mlp-4x8x3-sigmoid-cross_entropy-onehot-N7
  forward       (7, 3)      1.2e-16     1.2e-16     1.2e-16  pass
  loss              ()      0.0e+00     1.8e-16     1.8e-16  pass
  gradient        (67,)     2.1e-16     2.7e-16     5.6e-17  pass
  hvp             (67,)     8.4e-02     8.4e-02     8.4e-02  FAIL
      at index (8,): -0.0053127462181218055 != 0.00020544677598963534 (|diff| 0.00552)
OK: 4 checks, 3 passed, 1 failed in 14 s (950 us per call)
"""


@pytest.mark.parametrize(
    "printed",
    [
        DOCUMENTED.replace("2.7e-16", "3.0e-16").replace("5.6e-17", "2.8e-17"),  # rounding digits of another machine
        DOCUMENTED.replace("0.0e+00     1.8e-16", "1.5e-16     0.0e+00"),  # an exact zero against rounding
        DOCUMENTED.replace("  2.1e-16     2.7e-16", "  9.9e-15     3.1e-14"),  # still far under the rounding level
        DOCUMENTED.replace("(7, 3)      1.2e-16", "(7, 3)   1.2e-16"),  # column widths that follow the numbers
        DOCUMENTED.replace("0.0053127462181218055", "0.0053127462181218123"),  # rounding in a full-precision value
        DOCUMENTED.replace("in 14 s (950 us", "in 110 s (1.2 ms"),  # measured times: any value, any unit of time
    ],
)
def test_a_rounding_level_change_passes(printed):
    assert readme.drift(DOCUMENTED, printed) is None


@pytest.mark.parametrize(
    "printed, expected",
    [
        (
            DOCUMENTED.replace("  loss              ()      0.0e+00     1.8e-16     1.8e-16  pass\n", ""),
            "line 5 is no longer printed (1 line missing)",
        ),
        (DOCUMENTED.replace("2.7e-16", "1.2e-03"), "line 6, number 3 (2.7e-16 documented, 1.2e-03 printed now)"),
        (
            DOCUMENTED.replace("(67,)     2.1e-16", "(68,)     2.1e-16"),
            "line 6, number 1 (67 documented, 68 printed now)",
        ),
        (DOCUMENTED.replace("5.6e-17  pass", "5.6e-17  FAIL"), "line 6 changed its words"),
        (DOCUMENTED.replace("8.4e-02     8.4e-02", "9.7e-02     8.4e-02"), "line 7, number 2 (8.4e-02 documented"),
        (DOCUMENTED.replace("at index (8,)", "at index (9,)"), "line 8, number 1 (8 documented, 9 printed now)"),
        (DOCUMENTED.replace("OK: 4", "diagnosis: only sigmoid cases\nOK: 4"), "a new line is printed after line 8"),
        (DOCUMENTED.replace("in 14 s", "in 14 checks"), "line 9 changed its words"),
    ],
)
def test_a_real_drift_fails_and_says_what_and_where(printed, expected):
    why = readme.drift(DOCUMENTED, printed)
    assert why is not None and why.startswith(expected), why


def test_a_drifted_block_is_reported_with_its_place_and_the_command_that_regenerates_it(tmp_path):
    def document(printed):
        path = tmp_path / "doc.md"
        path.write_text(f"intro\n\n```\n$ python -c \"print('{printed}')\"\nerror 2.7e-16 pass\n```\n")
        return str(path)

    assert readme.update([document("error 3.0e-16 pass")], rewrite=False) == []
    path = document("error 1.2e-03 FAIL")
    problems = readme.update([path], rewrite=False)
    assert len(problems) == 1 and problems[0].startswith(f"{os.path.relpath(path, ROOT)}:5, the output of `python -c")
    assert "line 5 changed its words" in problems[0] and "python -m benchmarks.readme" in problems[0]
    assert "rewrite the docs" not in problems[0]
    assert readme.update([path], rewrite=True) == [] and "error 1.2e-03 FAIL\n```" in open(path).read()
    assert readme.update([path], rewrite=False) == []


def test_an_exact_section_reports_its_first_differing_line(tmp_path):
    path = tmp_path / "doc.md"
    good = readme.baseline_run()
    edited = good.replace(" s.", " s (edited).")
    path.write_text(f"<!-- generated: baseline-run -->\n{edited}<!-- end generated: baseline-run -->\n")
    problems = readme.update([str(path)], rewrite=False)
    assert len(problems) == 1
    assert "doc.md:2, the generated section 'baseline-run' drifted: line 2 differs" in problems[0]
    readme.update([str(path)], rewrite=True)
    assert good in path.read_text() and readme.update([str(path)], rewrite=False) == []


def test_flag_table_lists_every_option_with_its_help():
    from benchmarks.__main__ import build_parser

    table = readme.flag_table(build_parser())
    help_text = " ".join(build_parser().format_help().split())
    for action in build_parser()._actions[1:]:
        assert f"`{action.option_strings[0]}" in table
        assert " ".join(action.help.split()) in help_text


# ---- links, length, terms ------------------------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _anchors(text):
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    seen, anchors = defaultdict(int), set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


@pytest.mark.parametrize("path", readme.documents(), ids=lambda path: os.path.relpath(path, ROOT))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(path):
    text = FENCE.sub("", open(path).read())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(resolved):
            broken.append(f"{target}: no file {os.path.relpath(resolved, ROOT)}")
        elif anchor and anchor not in _anchors(open(resolved).read()):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {os.path.relpath(resolved, ROOT)}")
    assert broken == []


def test_the_link_check_finds_a_broken_link():
    assert "usage" in _anchors("# Usage\n") and "two-commands" in _anchors("## Two commands\n")
    assert "same-layer-block-g_l-kron-z_l-z_lt" in _anchors("## Same-layer block: `G_l (kron) z_l z_l^T`\n")
    assert "hessian-vector-products-pearlmutters-r-operator" in _anchors(
        "## Hessian-vector products: Pearlmutter's R-operator\n"
    )
    assert "two-commands" not in _anchors("## Three commands\n")


def test_the_readme_reads_in_five_minutes():
    text = _read("README.md")
    assert text.count("\n") <= 250
    for command in (
        'pip install "torch==2.13.0" -e ".[test]" && python -m benchmarks\n',
        'pip install "torch==2.13.0" -e ".[test]" && python -m pytest -n auto\n',
    ):
        assert f"```bash\n{command}```" in text
    engine = text[text.index("## Check your engine") : text.index("<!-- generated: minimal-engine -->")]
    for attribute in (
        "net.weights",
        "net.biases",
        "net.activations",
        "net.loss",
        "net.dtype",
        "net.sizes",
        "net.n_params",
        "parameter order",
    ):
        assert attribute in engine


@pytest.mark.parametrize(
    "term",
    [
        "write floor",
        "ratio of mins",
        "staged call",
        "XLA plan",
        "rounding floor",
        "arbiter",
        "case table",
        "per-sample gradients",
        "same-layer block",
        "parameter order",
        "hvp",
        "relative error",
        "rounding level",
    ],
)
def test_the_glossary_defines_each_term(term):
    entry = re.search(rf"^### {re.escape(term)}\n\n(.+?)(?=\n### |\Z)", _read("docs", "glossary.md"), re.M | re.S)
    assert entry is not None and len(entry.group(1).split()) >= 15


# ---- the minimal engine of the README ------------------------------------------------------------------------
CASES = "mlp-4x8x3-sigmoid-cross_entropy-onehot-N7,mlp-3x6x6x2-softplus-cross_entropy-soft-N6,mlp-3x6x6x2-relu-mse-N8"


def check(engine, tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "xval", "check", engine, "--cases", CASES, "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, json.loads(report.read_text()) if report.exists() else None


def test_the_minimal_engine_passes_the_check(tmp_path):
    done, report = check("examples/minimal_engine.py", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    statuses = {(row["case"], row["quantity"]): row["status"] for row in report["rows"]}
    assert len({case for case, _ in statuses}) == 3
    for (case, quantity), status in statuses.items():
        expected = "pass" if quantity in ("forward", "loss", "gradient") else "not implemented"
        assert status == expected, (case, quantity, status)
    assert all(error < 1e-13 for row in report["rows"] for error in row["errors"].values())


def test_the_minimal_engine_with_its_weight_gradients_transposed_fails_the_check(tmp_path):
    source = _read("examples", "minimal_engine.py")
    assert source.count("(delta.T @ z[layer]).reshape(-1)") == 1
    engine = tmp_path / "transposed.py"
    engine.write_text(source.replace("(delta.T @ z[layer]).reshape(-1)", "(delta.T @ z[layer]).T.reshape(-1)"))
    done, report = check(str(engine), tmp_path)
    assert done.returncode == 1
    statuses = {(row["case"], row["quantity"]): row["status"] for row in report["rows"]}
    assert {quantity for (_, quantity), status in statuses.items() if status == "fail"} == {"gradient"}


# ---- examples and prose ------------------------------------------------------------------------------------------
def run_example(script, blocked, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, XVAL_TEST_BLOCK=blocked, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    return subprocess.run(
        [sys.executable, os.path.join("examples", script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.parametrize(
    "script, blocked, column, kept",
    [
        ("compare_engines.py", "jax", "vs jax", "vs torch"),
        ("weight_space_symmetry.py", "torch", " torch:", "manual:"),
    ],
)
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
    text = _read("README.md")
    start = text.index("```python\n", text.index("## Bring your torch model")) + len("```python\n")
    namespace = {}
    exec(text[start : text.index("```", start)], namespace)  # noqa: S102 - the README's own code
    assert namespace["H"].shape == (131, 131) and namespace["net"].activations == ("tanh", "identity")
    assert [type(m).__name__ for m in namespace["model_again"]] == ["Linear", "Tanh", "Linear"]


def test_the_gpu_prose_quotes_the_committed_gpu_files():
    """The sentences of docs/gpu.md and docs/complexity.md about the GPU run (not generated) say what its committed
    files say."""
    gpu = os.path.join("benchmarks", "baseline", "gpu")
    gpu_doc, complexity = " ".join(_read("docs", "gpu.md").split()), " ".join(_read("docs", "complexity.md").split())
    for log in ("tests.log", "tests-cupy.log"):
        passed = re.search(r"(\d+) passed", _read(gpu, log)).group(1)
        assert f"({passed} passed, [`{log}`]" in gpu_doc
    rates = {}
    for width, block in re.findall(r"width (\d+): block [\d.]+ GB\n((?:  .*\n)+)", _read(gpu, "write-rates.txt")):
        for what, median, rate in re.findall(r"  (.+?)\s+median\s+([\d.]+) ms .* ([\d.]+) TB/s", block):
            rates[int(width), what] = (float(median), float(rate))
    # cupy against torch for manual's block, and their write rates, as the prose quotes them.
    for width in (128, 192):
        on_cupy = rates[width, "manual staged block on cupy"][0]
        on_torch = rates[width, "manual staged block on torch"][0]
        assert f"{on_cupy:.2f}" in complexity and f"{on_torch:.2f}" in complexity
        assert 1.6 <= round(on_cupy / on_torch, 1) <= 1.7  # "took 1.6-1.7 times as long on cupy" in docs/gpu.md
    cupy_rates = [rates[w, what][1] for w in (128, 192) for what in ("cupy empty+fill", "cupy broadcast multiply out=")]
    torch_rates = [rates[w, what][1] for w in (128, 192) for what in ("torch empty+fill_", "torch broadcast mul out=")]
    cupy_text = f"{min(cupy_rates):.2f}-{max(cupy_rates):.2f} TB/s"
    torch_text = f"torch's {min(torch_rates):.1f}-{max(torch_rates):.1f} TB/s"
    assert f"cupy's elementwise kernels wrote {cupy_text}, {torch_text}" in complexity
    assert f"elementwise kernels wrote {cupy_text} on the H100 against {torch_text}" in gpu_doc


def _ms_range(points, quantity, engine, skip=()):
    """``"lo-hi"`` in ms of an engine's width-sweep times (``skip``: widths quoted apart)."""
    times = [
        p["time_median_s"] * 1e3
        for p in points
        if p["sweep"] == "width"
        and p["quantity"] == quantity
        and p["engine"] == engine
        and p["status"] == "ok"
        and p["width"] not in skip
    ]
    return f"{min(times):.2f}-{max(times):.2f} ms"


def test_the_gpu_timing_ranges_quoted_are_the_baselines():
    points = json.loads(_read("benchmarks", "baseline", "gpu", "results.json"))["points"]
    complexity = " ".join(_read("docs", "complexity.md").split())
    gpu_doc = " ".join(_read("docs", "gpu.md").split())
    outlier = [
        p
        for p in points
        if p["sweep"] == "width" and p["quantity"] == "gradient" and p["engine"] == "manual" and p["width"] == 512
    ][0]["time_median_s"] * 1e3
    manual_gradient = _ms_range(points, "gradient", "manual", skip=(512,))
    manual_hvp = _ms_range(points, "hvp", "manual")
    assert (
        f"`manual`: {manual_gradient[:-3]} ms per gradient ({outlier:.2f} ms once, at width 512) and "
        f"{manual_hvp[:-3]} ms per hvp"
    ) in complexity
    assert (f"{manual_gradient} for a gradient ({outlier:.2f} ms once) and {manual_hvp} for an hvp") in gpu_doc
    jax_gradient, jax_hvp = _ms_range(points, "gradient", "jax"), _ms_range(points, "hvp", "jax")
    assert f"jax: {jax_gradient[:-3]} ms per gradient and {jax_hvp[:-3]} ms per hvp" in complexity
    both = [jax_gradient, jax_hvp]
    low, high = min(r.split("-")[0] for r in both), max(r.split("-")[1][:-3] for r in both)
    assert f"one compiled program ({low}-{high} ms" in gpu_doc
    torch_gradient, torch_hvp = _ms_range(points, "gradient", "torch"), _ms_range(points, "hvp", "torch")
    assert f"torch's eager autograd: {torch_gradient[:-3]} ms and {torch_hvp}" in complexity
    assert f"takes {torch_gradient[:-3]} and {torch_hvp}" in gpu_doc


def test_the_cpu_baseline_machine_quoted_is_the_recorded_one():
    """The sentence that names the CPU baseline's machine and libraries says what its results.json recorded."""
    machine = json.loads(_read("benchmarks", "baseline", "results.json"))["machine"]
    complexity = " ".join(_read("docs", "complexity.md").split())
    start = complexity.index("The committed CPU baseline is one real default run")
    sentence = complexity[start : complexity.index("float64)", start)]
    kernels = {pool["architecture"] for pool in machine["blas_pools"] if pool.get("architecture")}
    assert machine["cpu_model"] in sentence and f"{machine['cpu_cores_logical']} cores" in sentence
    assert kernels and all(f"`{kernel}` kernel" in sentence for kernel in kernels)
    for name, label in [("numpy", "numpy"), ("torch", "torch"), ("jax", "jax")]:
        major_minor = ".".join(machine["libraries"][name].split(".")[:2])
        assert f"{label} {major_minor}" in sentence, (name, major_minor)
