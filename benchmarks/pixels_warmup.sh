#!/usr/bin/env bash
# Does the pixels-lite0 recipe need a warm-up epoch over all negatives? Its own defaults (embed 1024, batch 64,
# Adam 2e-4, hardest-negative triplet, margin 0.2) on the rendered shapes data (1,000 training pictures of 64 px,
# 5 captions each; features from the frozen offline EfficientNet-Lite0), 3 epochs, seed 0, warmup_epochs 0 and 1.
# Results: benchmarks/results/pixels_warmup.json (docs/training.md, "Warm-up epochs").
# Run:  bash benchmarks/pixels_warmup.sh [OUT]   (about 25 min on a busy 2-core CPU)
set -euo pipefail
out=${1:-runs/pixels-warmup}
mkdir -p "$out" && cd "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f shapes/dataset_shapes.json ] || mmzoo make-data shapes --out shapes --images 1000 --render --image-size 64
[ -f feats/test_caps.txt ] || mmzoo extract-features --karpathy shapes/dataset_shapes.json --images shapes/images \
    --out feats --image-size 64 --batch-size 64
for w in 0 1; do
  rm -rf "runs/w$w"
  mmzoo train --model pixels-lite0 --data feats --out "runs/w$w" --epochs 3 --set "training.warmup_epochs=$w" \
      --set training.seed=0 --no-progress
done
python - <<'PY'
import json
for w in (0, 1):
    records = [json.loads(line) for line in open(f"runs/w{w}/metrics.jsonl")]
    print(json.dumps({"warmup_epochs": w, "dev_rsum": [round(r["dev"]["rsum"], 1) for r in records],
                      "collapse_epochs": [r["epoch"] for r in records if r["collapse"]]}))
PY
