#!/usr/bin/env bash
# Reproduce the shipped water models. DATA: the water set (default: ../shared/data beside the repo).
# Resumable: run it again after an interruption and it continues from the last epoch checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${DATA:-${MTSMLIP_DATA:-../shared/data}/water-cheng2019/water_1593.extxyz.gz}"
OUT="${OUT:-training/water/run}"
resume=""
[ -d "$OUT/checkpoints" ] && resume="--resume"
mtsmlip train --data "$DATA" --config training/water/config.yaml --out "$OUT" $resume
# ship: the three models and the manifest (not the checkpoints) go into the package
mkdir -p mtsmlip/shipped/water
cp "$OUT"/fast.pt "$OUT"/slow.pt "$OUT"/baseline.pt "$OUT"/manifest.json mtsmlip/shipped/water/
mtsmlip eval --model mtsmlip/shipped/water --data "$DATA" --split test --json --out training/water > training/water/test_eval.json
cat training/water/test_eval.json
