#!/usr/bin/env bash
# Run HERE (a machine with PyPI), before ci/gpu-check.sh goes to a GPU machine that cannot
# reach PyPI: downloads into .whl/ the wheels of poolconform's dependencies that such a
# machine's image may lack (pure Python, any Python 3), and keeps .whl/ out of git. The GPU
# check installs them into /tmp/site there; the device call carries the folder (carry: .whl).
# Everything heavy (torch with CUDA, numpy, onnx) must already be on that machine: a
# 64 MiB carry holds no onnxruntime-gpu wheel (about 300 MB), so where the machine's
# onnxruntime is the CPU build, onnxruntime-cuda reports itself unavailable and is not run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl .git/info
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "junitparser>=3.1"
ls -l .whl
