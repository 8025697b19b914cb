#!/usr/bin/env bash
# Distil the shipped water baseline into a fast model (resumes an interrupted run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${MTSMLIP_DATA:-$here/../../../../shared/data}/water-cheng2019/water_1593.extxyz.gz"
resume=()
[ -e "$here/run/distill.json" ] && resume=(--resume)
mtsmlip distill --teacher water --data "$data" --config "$here/config.yaml" --out "$here/run" "${resume[@]}" --no-progress
