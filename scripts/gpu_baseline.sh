#!/usr/bin/env bash
# The GPU baseline is part of scripts/gpu_check.sh now (the comparison tests on the GPU, then the benchmark), which
# writes everything into OUT; this name is kept for old instructions.
#
#   bash scripts/gpu_baseline.sh OUT [extra python -m benchmarks flags]
exec bash "$(dirname "$0")/gpu_check.sh" "$@"
