#!/usr/bin/env bash
# One prepared, unattended GPU run on any CUDA machine (the project never needs a GPU).
# Jobs run ONE AFTER ANOTHER: several processes sharing one GPU without MPS time-slice it, and
# small latency-bound jobs (a PnP chain calls the network thousands of times) then slow every
# process down by an order of magnitude (seen 2026-11-28: all six side-by-side jobs hit their
# time limit). Each job has its own time limit and packs its results, checkpoint included (a
# killed training can be exported with `--snapshot`), into one archive in $OUT:
#   1. drunet_gray_gpu.yaml fine-tune ($GRAY_MIN minutes of training);
#   2. drunet_rgb_gpu.yaml fine-tune ($RGB_MIN minutes);
#   3. the demo problem with $DEMO_STEPS SK-ROCK steps from the MAP, network on the GPU
#      (the 256x256 transient study).
# Budget: the defaults sum to ~9 min of command time; set GRAY_MIN / RGB_MIN / DEMO_STEPS for more.
# Device call: carry .whl (deepinv-0.5.0 and natsort wheels: `pip download --no-deps -d .whl deepinv==0.5.0
# natsort`; not installed there), training_scratch/drunet_gray/drunet_gray.pt (stage 5) and
# training_scratch/drunet_rgb_stage1/drunet_rgb.pt (the recipes' init_from files, sha256-checked).
# Usage (repo root):  bash scripts/gpu_run.sh            # on the GPU machine
#                     SMOKE=1 bash scripts/gpu_run.sh    # plumbing check on a CPU
set -u
OUT=${OUT:-runs/device_out}
mkdir -p "$OUT" training_scratch runs
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then  # deepinv + natsort wheels (not installed there)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu; GRAY_MIN=0.02; RGB_MIN=0.02; DEMO_STEPS=6
else
  DEV=cuda; GRAY_MIN=${GRAY_MIN:-3.5}; RGB_MIN=${RGB_MIN:-2.0}; DEMO_STEPS=${DEMO_STEPS:-2000}
fi
{ date -u; nvidia-smi -L 2>&1; $PY -c "import torch, deepinv; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'deepinv', deepinv.__version__)"; } > "$OUT/env.txt" 2>&1

pack() {  # pack NAME PATHS... -> $OUT/NAME.tgz, split into 15 MiB parts NAME.tgz.partNN above that
  local name=$1; shift   # (small parts are easy to copy back; rejoin with `cat NAME.tgz.part* > NAME.tgz`)
  tar czf "$OUT/$name.tgz" "$@" 2>>"$OUT/env.txt"
  if [ "$(stat -c %s "$OUT/$name.tgz")" -gt 15728640 ]; then
    split -b 15M -d "$OUT/$name.tgz" "$OUT/$name.tgz.part" && rm "$OUT/$name.tgz"
  fi
}

train() {  # train RECIPE_STEM MINUTES: time limit = budget + 90 s for loading, export and packing
  local r=$1 minutes=$2
  local limit; limit=$($PY -c "print(int($minutes * 60 + 90))")
  rm -rf training_scratch/$r
  OMP_NUM_THREADS=4 timeout $limit $PY -m denoisers_zoo.train denoisers_zoo/recipes/$r.yaml --device $DEV \
    --max-wall-minutes $minutes --no-progress > training_scratch/$r.log 2>&1
  echo "exit $?" >> training_scratch/$r.log
  if [ -f training_scratch/$r/train_info.json ]; then  # finished: the weights are there (16 MiB per file back)
    pack $r --exclude=ckpt.pt training_scratch/$r training_scratch/$r.log
  else  # killed: bring the checkpoint back for `--snapshot` / `--resume`
    pack $r training_scratch/$r training_scratch/$r.log
  fi
}

train drunet_gray_gpu $GRAY_MIN
train drunet_rgb_gpu $RGB_MIN

OMP_NUM_THREADS=8 timeout 240 $PY -m pnp_imaging demo --out runs/long_map --quiet --set device=$DEV \
  --set sampler.n_steps=$DEMO_STEPS --set sampler.n_burnin=$((DEMO_STEPS / 5)) --set checkpoint_every=250 \
  > runs/long_map.log 2>&1
echo "exit $?" >> runs/long_map.log
pack long_map --exclude=checkpoint.pt --ignore-failed-read runs/long_map runs/long_map.partial runs/long_map.log
ls -la "$OUT" >> "$OUT/env.txt"
