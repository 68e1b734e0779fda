#!/usr/bin/env bash
# One training run on a lent GPU machine (docs/model.md, "Training"): Keras on JAX, the data from gpu_data/
# (scripts/device/pack_data.py), a time limit the schedule is fitted to. The run folder is packed into
# $OUT/NAME.tar at the end (the run is stopped 60 s after its limit at the latest, so the tar always happens;
# give the call a timeout of MINUTES*60 + 120 s or more). Two runs can share the GPU: start two in the background
# with XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 and wait.
#   usage: scripts/device/train.sh NAME MINUTES [upscaler train options...]
set -u
name=$1; minutes=$2; shift 2
out=${OUT:-/tmp/device_out}; py=${PY:-python3}
mkdir -p "$out" runs
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
if [ "${REQUIRE_GPU:-1}" = 1 ]; then
  "$py" -c "import jax; assert jax.default_backend() == 'gpu', jax.devices()" || { echo "JAX sees no GPU"; exit 3; }
fi
timeout "$(awk "BEGIN{print int($minutes * 60 + 60)}")" "$py" -m cli train --run-dir "runs/$name" --data gpu_data \
  --time-limit "$minutes" --checkpoint-minutes 1 "$@" > "$out/$name.log" 2>&1
status=$?
tar -cf "$out/$name.tar" -C runs "$name"
echo "== $name (exit $status)"; tail -c 300 "$out/$name.log"; echo; cat "runs/$name/metrics.csv" 2>/dev/null
exit $status
