#!/usr/bin/env bash
# The a0 stream reference numbers in results/a0-stream-172/ (random-init weights, seed 0:
# no checkpoint ships with the project; pass one with MOVIBENCH_A0_CHECKPOINT=PATH):
# stream-vs-full-clip equivalence in TF, cross-runtime validation of every CPU format over
# 32 streamed frames, the cache hit time of a repeated export, per-frame step latency
# of every runtime on 2 threads (pytest-benchmark JSON), the TensorRT parser check of the ONNX,
# and Model Garden's own TFLite recipe streamed beside movibench's tflite-fp32 on the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Artifacts and generated data live in the checkout (git-ignored), so every path the results
# record is relative to it.
export MOVIBENCH_CACHE="${MOVIBENCH_CACHE:-.movibench-cache}"
OUT=results/a0-stream-172
MB=.venv/bin/movibench
mkdir -p "$OUT"
CKPT=()
[ -n "${MOVIBENCH_A0_CHECKPOINT:-}" ] && CKPT=(--checkpoint "$MOVIBENCH_A0_CHECKPOINT")
FORMATS=onnx,tflite-fp32,tflite-fp16,tflite-dynamic,tflite-int8

$MB validate equivalence --model a0 --variant stream --frames 32 --chunks 1,4,8 "${CKPT[@]}" \
    --json > "$OUT/equivalence.json" || true
$MB validate cross-runtime --model a0 --variant stream --formats "$FORMATS" --frames 32 \
    --synthetic 2 --full-clip onnx --threads 2 "${CKPT[@]}" --out "$OUT/cross_runtime.csv" \
    --json > "$OUT/cross_runtime.json" || true
# The a0 stream ONNX against TensorRT's ONNX parser table (no TensorRT or GPU needed).
$MB validate tensorrt --model a0 --variant stream "${CKPT[@]}" --json > "$OUT/tensorrt_compat.json" || true
# Model Garden's export_saved_model + TFLiteConverter.from_saved_model vs movibench's tflite-fp32.
$MB validate official-recipe --model a0 --variant stream --frames 32 --threads 2 "${CKPT[@]}" \
    --json > "$OUT/official_recipe.json" || true
# The artifacts exist now: this export is served from the cache.
$MB export --model a0 --variant stream --formats "$FORMATS" "${CKPT[@]}" --json > "$OUT/export_cached.json"
MOVIBENCH_BENCH_MODEL=a0 MOVIBENCH_BENCH_RESOLUTION=172 MOVIBENCH_BENCH_THREADS=2 \
    .venv/bin/python -m pytest tests/benchmarks --benchmark-only -q \
    --benchmark-json "$OUT/step_latency.json" --benchmark-columns=min,median,mean,stddev,rounds
