#!/usr/bin/env bash
# GPU conformance check: the CUDA backends beside their CPU twins on ci/gpu-matrix.toml.
# Installs nothing heavy: it uses the machine's own torch (CUDA build) and onnxruntime
# (onnxruntime-gpu where present). Wheels in .whl/ (ci/gpu-wheels.sh fetches the small ones a
# GPU image may lack, such as junitparser) are installed into /tmp/site when carried.
# Writes seven files, flat, to $OUT (default gpu-report/): machine.txt, backends.json,
# verdict.txt, and the run's summary.json, findings.json, summary.md and results.jsonl (a
# device call brings back at most 8 files); the whole report folder (report.html, junit.xml)
# stays in a fresh temporary folder, named at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-report}"
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/poolconform-gpu.XXXXXX")/run"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 --version; python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, torch.cuda.is_available()); print('onnxruntime', o.__version__, o.get_available_providers())"; } > "$OUT/machine.txt" 2>&1
python3 -m poolconform backends --json > "$OUT/backends.json" 2>> "$OUT/machine.txt"
python3 -m poolconform run --matrix ci/gpu-matrix.toml \
  --backends torch-cpu,torch-cuda,onnxruntime-cpu,onnxruntime-cuda \
  --out "$RUN_DIR" --timeout 120 --quiet
status=$?
for f in summary.json findings.json summary.md results.jsonl; do
  [ -f "$RUN_DIR/$f" ] && cp "$RUN_DIR/$f" "$OUT/$f"
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
s = json.load(open(f"{out}/summary.json"))
lines = [f"exit status {s['exit_status']}; {s['records']} records"]
for name, counts in s["by_backend"].items():
    lines.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
for name, info in s["backends"].items():
    if info.get("unavailable"):
        lines.append(f"{name}: not run: {info['unavailable']}")
for f in s["findings"][:15]:
    lines.append(f"finding: {f['backend']} {f['status']} x{f['count']}: {f['finding']} (e.g. {f['example']})")
open(f"{out}/verdict.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "all reports: $RUN_DIR"
exit $status
