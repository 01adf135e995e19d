#!/usr/bin/env bash
# One job of the CI matrix across Python versions (.ci/run calls it; run it yourself the same way):
#
#   ci/python-matrix.sh base 3.10   base install with ONNX Runtime (.[cpu,test]) and the tests on Python 3.10
#   ci/python-matrix.sh base 3.13   the same on 3.13
#   ci/python-matrix.sh floors      the lowest Python, every dependency at its floor (ci/floors.txt)
#
# Each job builds a fresh virtualenv under ${POOLCONFORM_CI_VENVS:-/tmp/poolconform-ci} and runs
# the whole suite there: tests of frameworks that are not installed skip with their reason. A
# missing interpreter is a printed skip, not a failure (exit 0); a failing job exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:?usage: ci/python-matrix.sh base VERSION | floors}
case "$job" in
  base) version=${2:?usage: ci/python-matrix.sh base VERSION} ;;
  floors) version=3.10 ;;  # requires-python's lowest
  *) echo "ci/python-matrix.sh: unknown job '$job' (allowed: base, floors)" >&2; exit 2 ;;
esac

find_python() {  # the newest pyenv build of Python $1, else python$1 on PATH; one that really runs it
  local root candidate
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for candidate in $(ls -d "$root"/versions/"$1".*/bin/python 2>/dev/null | sort -rV) \
                   $(command -v "python$1" 2>/dev/null || true); do
    if "$candidate" -c "import sys; sys.exit(sys.version.startswith('$1.') is False)" 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}

python=$(find_python "$version")
if [ -z "$python" ]; then
  echo "ci: SKIPPED job '$job' on Python $version: no python$version interpreter on PATH or in pyenv"
  exit 0
fi

venv=${POOLCONFORM_CI_VENVS:-/tmp/poolconform-ci}/$job-$version
start=$SECONDS
echo "ci: job '$job' on $("$python" --version 2>&1) ($python), venv $venv"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
if [ "$job" = floors ]; then
  "$venv/bin/python" -m pip install -q -c ci/floors.txt -e ".[cpu,test]"
else
  "$venv/bin/python" -m pip install -q -e ".[cpu,test]"
fi
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(numpy|onnx|onnxruntime|ml.dtypes|pytest) ' | tr -s ' ' | paste -sd ';' -
installed=$SECONDS
"$venv/bin/python" -m pytest -q -p no:cacheprovider
echo "ci: job '$job' on Python $version passed (install $((installed - start)) s, tests $((SECONDS - installed)) s)"
