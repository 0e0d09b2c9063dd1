#!/bin/bash
# Train the shipped models side by side on one GPU: tiny and base on coded exposures, and their
# box-exposure twins (the B2 ablation). Each writes its log, checkpoints and (at every validation
# and at the end) its exported weights with model card under OUT.
#
#   bash scripts/train_models.sh [MINUTES] [OUT]        # defaults: 20, out/train
#   MODELS='tiny:tiny:9:2e-3 tiny-box:tiny:5:2e-3' bash scripts/train_models.sh 5
#
# On a machine without the Debian photo packages, point BLURVID_PHOTO_CACHE at a file written
# with `python -m recon.photo_cache --save-cache FILE` where they are installed.
set -u
minutes=${1:-20}
out=${2:-out/train}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
py=${PYTHON:-python3}
mkdir -p "$out"
run() {  # name variant workers lr [extra options]
  local name=$1 variant=$2 workers=$3 lr=$4
  shift 4
  "$py" -m recon.train --variant "$variant" --steps 1000000 --minutes "$minutes" --batch 32 \
    --size 128 --workers "$workers" --lr "$lr" --device cuda --out "$out/$name" \
    --export "$out/weights" --name "$name" --val-every 1000 --ckpt-every 1000 --log-every 250 \
    --quiet "$@" > "$out/$name.log" 2>&1
  echo "$name exited with $?" >> "$out/status"
}
# name:variant:workers:lr, side by side; box twins get --box. MODELS overrides the set.
for spec in ${MODELS:-tiny:tiny:3:2e-3 base:base:4:1e-3 base-box:base:3:1e-3 tiny-box:tiny:2:2e-3}; do
  IFS=: read -r name variant workers lr <<< "$spec"
  extra=()
  [[ $name == *-box ]] && extra=(--box)
  run "$name" "$variant" "$workers" "$lr" "${extra[@]}" &
done
wait
echo done >> "$out/status"
