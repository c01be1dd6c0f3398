#!/usr/bin/env bash
# The GPU checks of issue 15 as one prepared command, for a session that is lent a device
# machine (about 15 minutes of device time in all, 10 minutes per command). Run from the
# repository root, with the machine's own python3 (its image holds jax with CUDA, flax,
# optax, orbax, equinox, diffrax, scikit-learn, scikit-image, tqdm, matplotlib, pytest; no
# install):
#
#   bash benchmarks/device_run.sh            # writes everything under $OUT
#   QUICK=1 bash benchmarks/device_run.sh    # smoke run (xs rungs, short timing; any CPU)
#
# What it records, each step under its own time limit so that one slow step cannot take the
# others' time:
#   1. the devices and versions seen (devices.txt);
#   2. jax steps/s of every family (MLP, U-Net, DiT) at every size rung, batch 128 and 512
#      (benchmarks/train_speed.py --no-torch: the torch twin is a CPU peer);
#   3. member-steps/s of ensembles of E = 1, 8, 64 default MLPs (benchmarks/ensemble.py;
#      target: E = 64 at 20x the member-steps/s of E = 1);
#   4. the training, ensemble and sweep tests on the device.
# Files (at most 8 come back from a device machine): devices.txt, train_speed.json,
# ensemble.json, and one log per step.
set -uo pipefail
OUT=${OUT:-/tmp/jaxgap_device}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "${QUICK:-0}" = 1 ]; then
  SPEED=(--sizes xs --batch 16 --quick)
  ENS=(--quick)
  TESTS=(tests/test_train.py -k flat)
  LIMIT=300
else
  SPEED=(--batch 128,512 --repeats 5 --chunk-seconds 0.2 --warmup-seconds 0.5)
  ENS=(--members 1,8,64 --steps 60 --eval-every 30 --seq-runs 1)
  TESTS=(tests/test_train.py tests/test_ensemble.py tests/test_sweep.py)
  LIMIT=240
fi

step() {  # step NAME SECONDS CMD...: run CMD with a time limit, its output in $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  tail -n 30 "$OUT/$name.log"
}

$PY - >"$OUT/devices.txt" 2>&1 <<'EOF'
import jax, flax, optax
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__)
print("backend", jax.default_backend(), "devices", jax.devices())
EOF
cat "$OUT/devices.txt"
step train_speed "$LIMIT" "$PY" benchmarks/train_speed.py --no-torch "${SPEED[@]}" \
  --out device_train_speed
cp benchmarks/results/device_train_speed.json "$OUT/train_speed.json" 2>/dev/null
step ensemble 150 "$PY" benchmarks/ensemble.py "${ENS[@]}" --out device_ensemble
cp benchmarks/results/device_ensemble.json "$OUT/ensemble.json" 2>/dev/null
step tests 150 "$PY" -m pytest -q -x -p no:cacheprovider "${TESTS[@]}"
ls -l "$OUT"
