#!/usr/bin/env bash
# Distil SevenNet-0 on crystalline silicon into a fast model (resumes an interrupted run).
# Needs the optional teacher: pip install -e ".[sevenn]"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
resume=()
[ -e "$here/run/distill.json" ] && resume=(--resume)
mtsmlip distill --teacher 'sevenn.calculator:SevenNetCalculator:{"model": "7net-0"}' \
    --structure "$here/si64.extxyz" --temperature-K 300 --frames 120 --md-timestep-fs 2 --md-interval 5 \
    --config "$here/config.yaml" --out "$here/run" "${resume[@]}"
