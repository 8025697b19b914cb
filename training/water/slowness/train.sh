#!/usr/bin/env bash
# The water pair with the slowness term (config.yaml beside this file). Stage 1 and the
# baseline are reused from the shipped recipe's run (training/water/run, which
# training/water/train.sh writes); stage 2 trains anew. Resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA="${DATA:-${MTSMLIP_DATA:-../shared/data}/water-cheng2019/water_1593.extxyz.gz}"
OUT="${OUT:-training/water/slowness/run}"
resume=""
[ -d "$OUT/checkpoints" ] && resume="--resume"
mtsmlip train --data "$DATA" --config training/water/slowness/config.yaml --out "$OUT" \
  --reuse-stages-from training/water/run $resume
mtsmlip eval --model "$OUT" --data "$DATA" --split test --json --out training/water/slowness \
  > training/water/slowness/test_eval.json
cat training/water/slowness/test_eval.json
