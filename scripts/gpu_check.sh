#!/usr/bin/env bash
# The checks that need a CUDA GPU, run on one, from the repository root, with the package and its
# test dependencies importable (`pip install -e '.[test]'`, or PYTHON pointing at such a Python):
#
#   scripts/gpu_check.sh [all|tests|bench|share] [RESULTS_DIR]
#
# tests: the tests that are skipped without CUDA (compiled steps with CUDA graphs, the compile
#        cache on CUDA, the per-process memory cap of a shared GPU);
# bench: the trainer bench on cuda: same-spec off vs auto, and time to 93% and to 94% (our GPU
#        recipe cold, then warm, against the pytorch/examples loop);
# share: 16 reference-MLP jobs on one worker with --jobs-per-gpu 1, then 4: total wall time.
# Each part writes its log (and the bench its JSON) to RESULTS_DIR (default benchmarks/results),
# named by the commit. The exit status is 0 only if every part asked for succeeded.
set -uo pipefail

part=${1:-all}
results=${2:-benchmarks/results}
python=${PYTHON:-python3}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p "$results"
# Importable without an install too: sdk/taas links to app/ and worker/.
export PYTHONPATH="sdk:.${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0

run_part() {
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$results/gpu-$name-$commit.log" || status=1
}

case $part in
all | tests | bench | share) ;;
*)
    echo "usage: scripts/gpu_check.sh [all|tests|bench|share] [RESULTS_DIR]" >&2
    exit 2
    ;;
esac
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "no CUDA device visible to $python: nothing to check here" >&2
    exit 2
}
if [[ $part == all || $part == tests ]]; then
    run_part tests "$python" -m pytest -q -rs -p no:cacheprovider \
        tests/worker/trainer/test_accel.py tests/worker/trainer/test_compiled.py \
        tests/worker/resources/test_gpu_share.py
fi
if [[ $part == all || $part == bench ]]; then
    run_part bench "$python" -m taas.worker.trainer.bench --device cuda --repeats 1 \
        --repeats-target 2 --baseline-epochs 8 --out "$results/gpu-bench-$commit.json"
fi
if [[ $part == all || $part == share ]]; then
    run_part share "$python" -m scripts.gpu_share_bench --jobs 16 --per-gpu 1,4 --epochs 2
fi
exit $status
