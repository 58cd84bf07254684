#!/usr/bin/env bash
# The GPU baseline of the scaling benchmark, as one command for a machine with a CUDA GPU and CUDA builds of
# torch and jax (manual stays on numpy on the CPU, labelled so):
#
#   bash scripts/gpu_baseline.sh OUT [extra python -m benchmarks flags]
#
# It writes OUT/gpu/: results.json, results.csv, time_per_sample.png, peak_memory.png and output.txt (the
# printed tables), the files to commit as benchmarks/baseline/gpu/. The Hessian ratio rows are CPU targets and are
# left out. BackPACK and curvlinops join as peers when importable; on a machine without internet, bring them as
# wheels in .whl/ (made on a machine with internet, for the GPU machine's Python, e.g. 3.12):
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       backpack-for-pytorch curvlinops-for-pytorch unfoldNd einconv einops linear_operator jaxtyping wadler_lindig
#
# and they are installed into a private folder first (the machine's own torch is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/gpu_baseline.sh OUT [extra flags]}
shift
mkdir -p "$out/gpu"
if compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d)
    python3 -m pip install --quiet --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
PYTHONUNBUFFERED=1 python3 -m benchmarks --device cuda --no-ratios --out "$out/gpu" "$@"
