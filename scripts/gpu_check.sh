#!/usr/bin/env bash
# One prepared check of dlexp's GPU paths, for a lent GPU machine: writes OUT_DIR/report.json
# and OUT_DIR/gpu_check.log (scripts/gpu_check.py says what is measured). Runs from a checkout
# with PYTHONPATH=src, installs the carried wheels (.whl/, from scripts/gpu_carry.sh) into
# /tmp/site when Hydra is missing, and unpacks the carried data (.gpu_data/) to /tmp.
# Without CUDA it says "no CUDA" and runs the parts that are valid on a CPU.
#   scripts/gpu_check.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
py=${PYTHON:-python3}  # the interpreter that has PyTorch (on the GPU machine: python3)
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$py" -c "import hydra" 2>/dev/null && [ -d .whl ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
data=${DLEXP_DATA_DIR:-}
if [ -z "$data" ] && [ -d .gpu_data ]; then  # the carried data, unless told otherwise
  data=/tmp/gpu_data && mkdir -p "$data" && cp -r .gpu_data/MNIST "$data"/
  [ -f .gpu_data/aclImdb_cut.tgz ] && tar -xzf .gpu_data/aclImdb_cut.tgz -C "$data"
fi
export DLEXP_DATA_DIR="${data:-data}" DLEXP_CACHE_DIR=/tmp/dlexp_cache
timeout 480 "$py" scripts/gpu_check.py "$out" --data "$DLEXP_DATA_DIR" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
