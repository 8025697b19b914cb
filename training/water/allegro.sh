#!/usr/bin/env bash
# Reproduce the shipped all-Allegro water pair (mtsmlip/shipped/water-allegro): the
# shipped recipe with an Allegro slow model (sweep/allegro-2l.yaml). Stage 1 and the
# baseline are reused from training/water/run (train.sh), so only stage 2 trains
# (~40 min on 2 cores); then the stability check (Bussi, 2 frames, 300 and 450 K).
# Resumable: run it again after an interruption. DATA: the water set.
set -euo pipefail
DATA="$(realpath "${DATA:-${MTSMLIP_DATA:-$(dirname "$0")/../../../shared/data}/water-cheng2019/water_1593.extxyz.gz}")"
cd "$(dirname "$0")"
RUN=sweep/allegro-2l/run
done_check() { python -c "import json,sys; sys.exit(0 if json.load(open('$RUN/manifest.json')).get('stability') else 1)" 2>/dev/null; }
if ! done_check; then
  resume=""; [ -d $RUN/checkpoints ] && resume="--resume"
  mtsmlip train --data "$DATA" --config sweep/allegro-2l.yaml --out $RUN --reuse-stages-from run $resume \
      --check-fs 500
fi
# ship: the three models and the manifest (not the checkpoints) go into the package. The
# baseline is the shipped water baseline (the same weights; shipped as the same file)
mkdir -p ../../mtsmlip/shipped/water-allegro
cp $RUN/fast.pt $RUN/slow.pt $RUN/manifest.json ../../mtsmlip/shipped/water-allegro/
cp ../../mtsmlip/shipped/water/baseline.pt ../../mtsmlip/shipped/water-allegro/baseline.pt
python - <<'PY'
import hashlib, json, os
folder = "../../mtsmlip/shipped/water-allegro"
path = os.path.join(folder, "manifest.json")
manifest = json.load(open(path))
data = open(os.path.join(folder, "baseline.pt"), "rb").read()
manifest["model_files"]["baseline"].update(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
json.dump(manifest, open(path + ".tmp", "w"), indent=2)
os.replace(path + ".tmp", path)
PY
mtsmlip eval --model ../../mtsmlip/shipped/water-allegro --data "$DATA" --split test --json \
    --out sweep/allegro-2l > sweep/allegro-2l/test_eval.json
