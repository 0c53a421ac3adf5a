#!/usr/bin/env bash
# GPU checks in one go, for a leased GPU machine without network: install vexplain (and the
# wheels in .whl/, e.g. captum) offline, run the CUDA tests, then the GPU occlusion benchmark.
# Logs and JSON go to $OUT (default ./gpu-out). Usage: bash benchmarks/gpu_checks.sh [BENCH_BUDGET_S]
# Environment: TESTS (test files; empty: none), MODELS, REPEATS and IMAGES (compare_occlusion_gpu.py).
set -uo pipefail
OUT=${OUT:-gpu-out}
BUDGET=${1:-200}
TESTS=${TESTS-tests/test_cuda.py tests/test_model_safety.py tests/test_occlusion_incremental.py tests/test_occlusion_precision.py}
MODELS=${MODELS:-resnet50,resnet18,vgg,demo}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, captum; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'captum', captum.__version__)" | tee -a "$OUT/gpu.txt"
# CUDA tests (TF32 off in tests/conftest.py), and the occlusion and safety suites on this machine
TESTS_STATUS=0
if [ -n "$TESTS" ]; then
  timeout 150 python3 -m pytest -q -p no:cacheprovider $TESTS 2>&1 | tee "$OUT/gpu-tests.log"
  TESTS_STATUS=$?
  [ "$TESTS_STATUS" -eq 0 ] || echo "CUDA tests FAILED (exit $TESTS_STATUS); running the benchmark anyway" >&2
fi
timeout $((BUDGET + 120)) python3 benchmarks/compare_occlusion_gpu.py --repeats "$REPEATS" --budget-s "$BUDGET" --models "$MODELS" ${IMAGES:+--images "$IMAGES"} \
  --json "$OUT/occlusion-gpu.json" 2>&1 | tee "$OUT/gpu-bench.log"
BENCH_STATUS=$?
echo "tests exit $TESTS_STATUS, benchmark exit $BENCH_STATUS" | tee "$OUT/status.txt"
[ "$TESTS_STATUS" -eq 0 ] && [ "$BENCH_STATUS" -eq 0 ]
