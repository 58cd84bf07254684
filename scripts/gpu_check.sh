#!/usr/bin/env bash
# The GPU check, as one command for a machine with a CUDA GPU:
#
#   bash scripts/gpu_check.sh OUT [extra python -m benchmarks flags]
#   bash scripts/gpu_check.sh --files          # the names of the files it writes, one a line
#
# It needs CUDA builds of torch and jax (cupy optional), installed first; docs/gpu.md has the recipe and which
# NVIDIA driver each CUDA major version needs. In short, for CUDA 12 (CUDA 13: whl/cu130, jax[cuda13], cupy-cuda13x):
#
#   pip install torch --index-url https://download.pytorch.org/whl/cu126
#   pip install "jax[cuda12]" "cupy-cuda12x[ctk]" && pip install -e ".[test]"
#
# (a) the comparison tests with XVAL_DEVICE=cuda: all three engines on the GPU (manual on cupy when it imports,
#     else on torch CUDA tensors; torch_ref and jax_ref on CUDA), bounded to 5 minutes (GPU_CHECK_TEST_SECONDS), logged to tests.log;
# (b) the GPU benchmark baseline (python -m benchmarks --device cuda --no-ratios: the Hessian ratio rows are CPU
#     targets), which writes results.json, results.csv, time_per_sample.png, peak_memory.png and output.txt.
#
# manual computes with cupy on the GPU unless XVAL_ARRAY says otherwise; the committed baseline was made with
# `XVAL_ARRAY=torch bash scripts/gpu_check.sh OUT` (torch wrote the block's memory faster on an H100: see
# benchmarks/baseline/gpu/write-rates.txt, from scripts/gpu_write_rates.py).
#
# Everything goes into OUT, at most 8 files (the folder to commit as benchmarks/baseline/gpu/), with machine.txt: the
# GPU, the library versions and the array library manual uses. Packages the machine lacks (array-api-compat, and
# BackPACK and curvlinops for the peers) come as wheels in .whl/, made on a machine with internet for the GPU
# machine's Python (e.g. 3.12):
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl array-api-compat array-api-strict \
#       backpack-for-pytorch curvlinops-for-pytorch unfoldNd einconv einops linear_operator jaxtyping wadler_lindig
#
# and they are installed into a private folder first (the machine's own torch, jax and cupy are left alone).
# Exit status: 2 for a usage error, 3 when no GPU is found (nothing is written then), else the tests' status (the
# benchmark's is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=(tests.log machine.txt results.json results.csv time_per_sample.png peak_memory.png output.txt)
usage="usage: bash scripts/gpu_check.sh OUT [extra python -m benchmarks flags] (or --files: what it writes in OUT)"
if [[ $# -lt 1 || $1 == "-h" || $1 == "--help" ]]; then
    echo "$usage" >&2
    exit 2
fi
if [[ $1 == "--files" ]]; then
    printf '%s\n' "${FILES[@]}"
    exit 0
fi
out=$1
shift
if [[ -z $out || $out == -* ]]; then
    echo "gpu_check: OUT must be a folder to write the results in, got '$out'; $usage" >&2
    exit 2
fi

if compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d)
    python3 -m pip install --quiet --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# jax would otherwise claim 75% of the GPU when it first touches it, leaving the others (and test workers) the rest.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

gpus=$(python3 -c "from benchmarks.machine import gpu_names; print(', '.join(gpu_names()))" 2>/dev/null || true)
if [[ -z $gpus ]]; then
    echo "gpu_check: no CUDA GPU found (neither torch nor jax sees one), so nothing was run or written; run it on a" \
        "machine with a CUDA GPU and CUDA builds of torch and jax (and cupy, optional)" >&2
    exit 3
fi
mkdir -p "$out"

{
    echo "GPUs: $gpus"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
    XVAL_DEVICE=cuda python3 -c "
import importlib
from manual import arrays
print('manual computes with:', arrays.library().label)
for name in ('numpy', 'torch', 'jax', 'jaxlib', 'cupy', 'array_api_compat', 'array_api_strict'):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError:
        print(name, 'not installed')
"
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

workers=()
if python3 -c "import xdist" 2>/dev/null; then
    cores=$(nproc 2>/dev/null || echo 2)
    workers=(-n $(( cores < 8 ? cores : 8 )))  # each worker holds a CUDA context per library: 8 is plenty
fi
limit=${GPU_CHECK_TEST_SECONDS:-300}
echo "comparison tests on the GPU (XVAL_DEVICE=cuda), at most $limit s ..."
set +e
XVAL_DEVICE=cuda timeout -s INT -k 15 "$limit" python3 -m pytest -q -p no:cacheprovider "${workers[@]}" \
    tests/test_comparisons.py tests/test_staged.py tests/test_arrays.py tests/test_tf32.py >"$out/tests.log" 2>&1
tests=$?
set -e
tail -n 30 "$out/tests.log"
[[ $tests == 124 ]] && echo "gpu_check: the comparison tests ran past $limit s and were stopped (see tests.log)"
echo "comparison tests: exit status $tests"

# GPU_CHECK_BENCH_SECONDS bounds the benchmark: it is then stopped with SIGTERM and still writes every file of the
# points measured so far (a later run with --resume goes on from there).
bound=()
if [[ -n ${GPU_CHECK_BENCH_SECONDS:-} ]]; then
    bound=(timeout -s TERM -k 30 "$GPU_CHECK_BENCH_SECONDS")
fi
set +e
"${bound[@]}" python3 -m benchmarks --device cuda --no-ratios --out "$out" "$@"
bench=$?
set -e
echo "benchmark: exit status $bench"
echo "wrote in $out: ${FILES[*]}"
exit "$tests"
