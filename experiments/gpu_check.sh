#!/usr/bin/env bash
# The GPU check, in one go (under 10 minutes): the epoch time of experiments.mnist's recipe under several Trainer
# settings (experiments.epoch_time, also with XLA's command buffers extended to while loops), the side-by-side
# benchmark (jaxcnn vs plain XLA vs PyTorch CUDA eager and torch.compile, with the MNIST epoch), the training
# command's epoch time, and the op and lowering tests on the GPU, everything written to OUT_DIR. Needs jax with
# CUDA, PyTorch with CUDA, flax, optax, orbax, pytest, tqdm and matplotlib; no network and no TensorFlow Datasets:
# the data comes from the folders given.
#
#   PYTHONPATH=. bash experiments/gpu_check.sh MNIST_DIR OUT_DIR [FASHION_MNIST_DIR]
#
# MNIST_DIR holds MNIST's IDX files; FASHION_MNIST_DIR (optional) Fashion-MNIST's, whose 60,000 training images
# give a full-size epoch (used, when given, for the epoch times and the training command). OUT_DIR gets log.txt
# (every step's exit status, time and last lines) and each step's <name>.log, epoch_time.json, bench.json,
# <name>_results.json and step_profile/ (a training step's kernels: experiments.step_profile). GPU_CHECK_TESTS=0
# leaves the tests out. To rehearse it on a machine without a GPU:
# GPU_CHECK_PLATFORM=cpu GPU_CHECK_EPOCHS=1 GPU_CHECK_IMAGES=1280 (a quick CPU bench, one small epoch).
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: PYTHONPATH=. bash experiments/gpu_check.sh MNIST_DIR OUT_DIR [FASHION_MNIST_DIR]" >&2
  exit 2
fi
mnist=$1 out=$2 fashion=${3:-}
platform=${GPU_CHECK_PLATFORM:-gpu} epochs=${GPU_CHECK_EPOCHS:-4} images=${GPU_CHECK_IMAGES:-60000}
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

epoch_data=${fashion:-$mnist}
step epoch_time 150 python3 -m experiments.epoch_time --data-dir "$epoch_data" --images "$images" --out "$out"
# The same with XLA's command buffers (CUDA graphs) extended to while loops and conditionals; a jaxlib that does
# not know the flag aborts, which only ends this step.
step epoch_cmdbuf 60 env XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL \
  python3 -m experiments.epoch_time --data-dir "$epoch_data" --images "$images" --rounds 2 \
  --settings "dispatch 50" "dispatch epoch" --out /tmp/gpu_check_cmdbuf
step step_profile 120 python3 -m experiments.step_profile --out "$out/step_profile"
step bench 300 python3 -m experiments.bench --platform "$platform" $quick --torch-compile --out "$out"
run_mnist() {  # run_mnist NAME ARGS...: a few epochs of the training command; keeps its results.json
  local name=$1
  shift
  rm -rf "/tmp/gpu_check_$name"
  step "$name" 90 python3 -m experiments.mnist --epochs "$epochs" --out "/tmp/gpu_check_$name" "$@"
  cp "/tmp/gpu_check_$name/results.json" "$out/${name}_results.json" 2>> "$log"
}
if [ -n "$fashion" ]; then
  run_mnist fashion --dataset fashion_mnist --data-dir "$fashion"
else
  run_mnist mnist --data-dir "$mnist"
fi
# The ops against their references at full float32 precision (XLA's GPU default computes float32 matmuls and
# convolutions in TF32), last: on a slow compiler they are what the time limit cuts.
if [ "${GPU_CHECK_TESTS:-1}" != 0 ]; then
  step tests 150 env JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest -q -m "not slow" -p no:cacheprovider \
    tests/test_ops.py tests/test_lowering.py
fi
cat "$log"
