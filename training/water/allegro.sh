#!/usr/bin/env bash
# Reproduce the shipped all-Allegro water pair (mtsmlip/shipped/water-allegro): the
# shipped recipe with an Allegro slow model (sweep/allegro-2l.yaml). Stage 1 and the
# baseline are reused from training/water/run (train.sh), so only stage 2 trains
# (~40 min on 2 cores); then the stability check (Bussi, 2 frames, 300 and 450 K).
# Resumable: run it again after an interruption.
set -euo pipefail
cd "$(dirname "$0")"
DATA="${DATA:-${MTSMLIP_DATA:-../../../shared/data}/water-cheng2019/water_1593.extxyz.gz}"
bash sweep/run_sweep.sh allegro-2l
RUN=sweep/allegro-2l/run
mtsmlip train --data "$DATA" --config sweep/allegro-2l.yaml --out $RUN --resume --check-fs 500
# ship: the three models and the manifest (not the checkpoints) go into the package
mkdir -p ../../mtsmlip/shipped/water-allegro
cp $RUN/fast.pt $RUN/slow.pt $RUN/baseline.pt $RUN/manifest.json ../../mtsmlip/shipped/water-allegro/
mtsmlip eval --model ../../mtsmlip/shipped/water-allegro --data "$DATA" --split test --json \
    --out sweep/allegro-2l > sweep/allegro-2l/test_eval.json
