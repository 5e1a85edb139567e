#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the CUDA tests (tests/test_cuda.py and the metric test that
# compares CUDA with the CPU), then the training benchmark on the default scene with the default schedule
# (the CPU's 560 iterations of 4096 rays) and with a GPU-sized one (16384 rays per batch).
#
#   bash bench/gpu_checks.sh OUT
#
# Runs from the repository root without installing the package (PYTHONPATH=src), so that it also works on
# a GPU machine that has torch and the other requirements but no network. The default scene must already be
# in bench/results/train_gpu/scene (`semfield make-scene bench/results/train_gpu/scene --preset default
# --seed 0`; MuJoCo is not needed on the GPU machine). Logs and results.json files are copied into OUT.
set -uo pipefail
out=${1:?usage: bash bench/gpu_checks.sh OUT}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
scene=bench/results/train_gpu/scene
[ -f "$scene/transforms.json" ] || { echo "gpu_checks: no scene in $scene (see the header)" >&2; exit 2; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "=== CUDA tests ==="
timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py \
    tests/test_image_metrics.py::test_metrics_on_cuda_match_cpu 2>&1 | tee "$out/pytest_cuda.txt"

bench() {  # NAME BUDGET SETTINGS...: one training run on CUDA, results copied to OUT
    local name=$1 budget=$2
    shift 2
    local dir=bench/results/$name
    mkdir -p "$dir"
    [ -d "$dir/scene" ] || cp -r "$scene" "$dir/scene"
    echo "=== $name: budget $budget s, $* ==="
    timeout 300 python3 bench/bench_train.py --out "$dir" --runs 1 --budget "$budget" --eval-every-seconds 5 \
        --set device=cuda "$@" 2>&1 | tee "$out/$name.txt"
    cp "$dir/results.json" "$out/$name.results.json" 2>/dev/null
    cp "$dir/curve.png" "$out/$name.curve.png" 2>/dev/null
}
bench train_gpu 120
bench train_gpu_wide 120 --set iterations=1500 --set batch_rays=16384
nvidia-smi --query-gpu=memory.used --format=csv,noheader
