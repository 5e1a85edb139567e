#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the CUDA tests (tests/test_cuda.py and the metric test that
# compares CUDA with the CPU), then the training benchmark on the default scene with the default schedule
# (the CPU's 560 iterations of 4096 rays) and with GPU-sized ones (16384 rays per batch, 3000 iterations,
# at the default voxel size and at 0.8 voxel per pixel).
#
#   bash bench/gpu_checks.sh OUT
#
# Runs from the repository root without installing the package (PYTHONPATH=src), so that it also works on
# a GPU machine that has torch and the other requirements but no network. The default scene must already be
# in bench/results/train_gpu/scene (`semfield make-scene bench/results/train_gpu/scene --preset default
# --seed 0`; MuJoCo is not needed on the GPU machine). One log (gpu_checks.log), each benchmark's
# results.json and the default schedule's curve.png are copied into OUT (8 files at most).
set -uo pipefail
out=${1:?usage: bash bench/gpu_checks.sh OUT}
mkdir -p "$out"
exec > >(tee "$out/gpu_checks.log") 2>&1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
scene=bench/results/train_gpu/scene
[ -f "$scene/transforms.json" ] || { echo "gpu_checks: no scene in $scene (see the header)" >&2; exit 2; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "=== CUDA tests ==="
timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py \
    tests/test_image_metrics.py::test_metrics_on_cuda_match_cpu

bench() {  # NAME BUDGET SETTINGS...: one training run on CUDA, results copied to OUT
    local name=$1 budget=$2
    shift 2
    local dir=bench/results/$name
    mkdir -p "$dir"
    [ -d "$dir/scene" ] || cp -r "$scene" "$dir/scene"
    echo "=== $name: budget $budget s, $* ==="
    timeout 300 python3 bench/bench_train.py --out "$dir" --runs 1 --budget "$budget" --eval-every-seconds 5 \
        --set device=cuda "$@"
    cp "$dir/results.json" "$out/$name.results.json" 2>/dev/null
}
bench train_gpu 120
cp bench/results/train_gpu/curve.png "$out/train_gpu.curve.png" 2>/dev/null
bench train_gpu_long 120 --set iterations=3000 --set batch_rays=16384
bench train_gpu_fine 120 --set iterations=3000 --set batch_rays=16384 --set field.voxel_per_pixel=0.8
nvidia-smi --query-gpu=memory.used --format=csv,noheader
