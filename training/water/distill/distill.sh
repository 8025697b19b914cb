#!/usr/bin/env bash
# Distil the shipped water baseline into a fast model (resumes an interrupted run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${MTSMLIP_DATA:-$here/../../../../shared/data}/water-cheng2019/water_1593.extxyz.gz"
resume=()
[ -e "$here/run/distill.json" ] && resume=(--resume)
mtsmlip distill --teacher water --data "$data" --config "$here/config.yaml" --out "$here/run" "${resume[@]}" --no-progress
# accuracy on the 200 held-out frames against the DFT labels: fast alone, fast + correction (= the teacher)
mtsmlip eval --model "$here/run" --data "$data" --split test --json --out "$here" > "$here/test_eval.json"
cat "$here/test_eval.json"
