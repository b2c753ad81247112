#!/usr/bin/env bash
# The GPU check, in one go (under 10 minutes): the side-by-side benchmark (jaxcnn vs plain XLA vs PyTorch CUDA,
# with the MNIST epoch), the MNIST training command's epoch time, and the op and lowering tests on the GPU,
# everything written to OUT_DIR. Needs jax with CUDA, PyTorch with CUDA, flax, optax, orbax, pytest, tqdm and
# matplotlib; no network and no TensorFlow Datasets: the data comes from the folders given.
#
#   PYTHONPATH=. bash experiments/gpu_check.sh MNIST_DIR OUT_DIR [FASHION_MNIST_DIR]
#
# MNIST_DIR holds MNIST's IDX files; FASHION_MNIST_DIR (optional) Fashion-MNIST's, whose 60,000 training images
# give a full-size epoch. OUT_DIR gets log.txt (every step's exit status, time and last lines), tests.log,
# bench.log, bench.json, and for each dataset <name>.log and <name>_results.json. To rehearse it on a machine
# without a GPU: GPU_CHECK_PLATFORM=cpu GPU_CHECK_EPOCHS=1 (a quick CPU bench, one epoch).
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: PYTHONPATH=. bash experiments/gpu_check.sh MNIST_DIR OUT_DIR [FASHION_MNIST_DIR]" >&2
  exit 2
fi
mnist=$1 out=$2 fashion=${3:-}
platform=${GPU_CHECK_PLATFORM:-gpu} epochs=${GPU_CHECK_EPOCHS:-4}
quick=$([ "$platform" = gpu ] || echo --quick)
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:-.} PYTHONUNBUFFERED=1
log=$out/log.txt
: > "$log"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its output in OUT_DIR/NAME.log
  local name=$1 limit=$2 start status
  shift 2
  start=$(date +%s)
  echo "== $name: $*" >> "$log"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  status=$?
  tail -n 25 "$out/$name.log" >> "$log"
  echo "-- $name: exit $status after $(( $(date +%s) - start )) s" >> "$log"
}

{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "
import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"
} >> "$log" 2>&1

step bench 240 python3 -m experiments.bench --platform "$platform" $quick --data-dir "$mnist" --out "$out"
run_mnist() {  # run_mnist NAME ARGS...: a few epochs of the training command; keeps its results.json
  local name=$1
  shift
  rm -rf "/tmp/gpu_check_$name"
  step "$name" 90 python3 -m experiments.mnist --epochs "$epochs" --out "/tmp/gpu_check_$name" "$@"
  cp "/tmp/gpu_check_$name/results.json" "$out/${name}_results.json" 2>> "$log"
}
run_mnist mnist --data-dir "$mnist"
if [ -n "$fashion" ]; then
  run_mnist fashion --dataset fashion_mnist --data-dir "$fashion"
fi
# The ops against their references at full float32 precision (XLA's GPU default computes float32 matmuls and
# convolutions in TF32), last: on a slow compiler they are what the time limit cuts.
step tests 150 env JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest -q -m "not slow" -p no:cacheprovider \
  tests/test_ops.py tests/test_lowering.py
cat "$log"
