#!/usr/bin/env bash
# End to end, untuned, as a new user would run it: `mtsmlip train` with the
# default config (split, step budget and plateau stop fitted to the data, defaults fitted to the
# system), `mtsmlip eval` on the held-out frames, then `mtsmlip compare` for
# 2 ps at n = 2, 4, 6, 8 (Bussi, 300 K, 0.5 fs) from the last training frame.
# Usage: bash training/systems/e2e.sh SYSTEM [OUT]   (SYSTEM: ethanol, aspirin,
# water or copper). Data from $MTSMLIP_DATA (default ../shared/data); copper's
# frames are made here, labelled by ASE's EMT (training/systems/copper_emt.py).
# Every step resumes: run it again after an interruption.
set -euo pipefail
SYSTEM=${1:?usage: e2e.sh ethanol|aspirin|water|copper [OUT]}
OUT=${2:-runs/e2e}
DATA_DIR=${MTSMLIP_DATA:-../shared/data}
case "$SYSTEM" in
  ethanol|aspirin) DATA=$DATA_DIR/rmd17/${SYSTEM}_train.extxyz.gz; STEP=0.5 ;;
  water) DATA=$DATA_DIR/water-cheng2019/water_1593.extxyz.gz; STEP=0.5 ;;
  copper) DATA=$OUT/copper_emt.extxyz; STEP=2.0
          mkdir -p "$OUT"; [ -f "$DATA" ] || python training/systems/copper_emt.py "$DATA" ;;
  *) echo "unknown system $SYSTEM" >&2; exit 2 ;;
esac
RUN=$OUT/$SYSTEM
RESUME=(); [ -f "$RUN/train_config.yaml" ] && RESUME=(--resume)
[ -f "$RUN/manifest.json" ] || mtsmlip train --data "$DATA" --out "$RUN" "${RESUME[@]}"
mtsmlip eval --model "$RUN" --data "$DATA" --split test --json --out "$RUN/eval" > "$RUN/test_eval.json"
mtsmlip compare --model "$RUN" --structure "$DATA" --ps 2 --timestep-fs "$STEP" --n-inner 2,4,6,8 \
  --out "$OUT/$SYSTEM-compare" --no-progress
