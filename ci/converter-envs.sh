#!/usr/bin/env bash
# Build the converter backends' own environments (envs/*.txt) under $POOLCONFORM_ENV_DIR
# (default ~/.cache/poolconform/envs) unless they exist, so the tests of onnx2tf->litert and
# onnx2torch run instead of skipping. About 2.5 min and 2.6 GB (onnx2tf), 2.5 min and 5.5 GB
# (onnx2torch: a CUDA torch build) on the development machine. Needs poolconform on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${POOLCONFORM_ENV_DIR:-$HOME/.cache/poolconform/envs}"
for req in envs/*.txt; do
  name="$(basename "$req" .txt)"
  if [ -x "$root/$name/bin/python" ]; then
    echo "ci: environment $name exists: $root/$name"
    continue
  fi
  echo "ci: building environment $name from $req"
  poolconform env create "$name" -r "$req" --dir "$root" >/dev/null
done
