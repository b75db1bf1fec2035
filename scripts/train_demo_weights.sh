#!/usr/bin/env bash
# Reproduce the demo checkpoints in core/demo_weights/ (about 7 minutes each on 2 cores):
# generate the training set, train t0 stream and t0 base, copy the model-only checkpoints.
# Usage: bash scripts/train_demo_weights.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WORK="${1:-runs/demo-training}"
MB=.venv/bin/movibench
# Seed 7: a different set of videos from the default matrix's evaluation data (seed 0).
$MB data synth --out "$WORK/data" --classes 4 --videos-per-class 100 --frames 32 --size 64 \
    --seed 7 --val-fraction 0.2
for variant in stream base; do
    $MB train --data "$WORK/data" --out "$WORK/t0-$variant" --model t0 --variant "$variant" \
        --resolution 64 --frames 32 --batch-size 8 --steps 400 --lr 1e-3 --norm-momentum 0.9 \
        --seed 0
    dest="core/demo_weights/t0-$variant-synth"
    mkdir -p "$dest"
    cp "$WORK/t0-$variant"/{checkpoint,ckpt-1.index,ckpt-1.data-00000-of-00001,movibench_model.json,classes.txt,history.csv,train_config.json} "$dest/"
    (cd "$dest" && sha256sum ckpt-1.index ckpt-1.data-00000-of-00001 movibench_model.json > SHA256SUMS)
done
