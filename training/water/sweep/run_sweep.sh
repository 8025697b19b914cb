#!/usr/bin/env bash
# Stage 2 of each slim slow candidate; stage 1 and the baseline are reused from the
# shipped recipe's run (same identity). Resumable: run it again after an interruption.
set -uo pipefail
cd "$(dirname "$0")"
DATA="${DATA:-${MTSMLIP_DATA:-../../../../shared/data}/water-cheng2019/water_1593.extxyz.gz}"
for name in "$@"; do
  [ -f $name/run/manifest.json ] && continue
  resume=""; [ -d $name/run/checkpoints ] && resume="--resume"
  mkdir -p $name; echo "=== $name $(date -u)"
  mtsmlip train --data "$DATA" --config $name.yaml --out $name/run --reuse-stages-from ../run $resume > $name/train.log 2>&1
  echo "=== $name done rc=$? $(date -u)"
done
