#!/usr/bin/env bash
# Prepares what scripts/gpu_check.sh needs on the lent GPU machine, which has PyTorch and
# Lightning but no Hydra and no network: the missing wheels in .whl/ and the data in
# .gpu_data/ (MNIST's four files and IMDB's train and test reviews, without the 50k unlabeled
# ones, to stay well under the 64 MiB a device call carries). Both are git-ignored.
#   scripts/gpu_carry.sh [DATA_DIR]      (default: $DLEXP_DATA_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${DLEXP_DATA_DIR:?give the data folder or set DLEXP_DATA_DIR}}

rm -rf .whl .gpu_data && mkdir -p .whl .gpu_data/MNIST/raw
quiet() { grep -v "^WARNING: Location" || true; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform any -d .whl "hydra-core==1.3.2" "omegaconf==2.3.0" 2>&1 | quiet
# Hydra's antlr4 runtime (4.9.3) is published as source only: build its pure-Python wheel here
python3 -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3" 2>&1 | quiet
cp "$data"/MNIST/raw/*-ubyte* .gpu_data/MNIST/raw/
tar -xzf "$data/aclImdb_v1.tar.gz" -C .gpu_data --exclude 'aclImdb/train/unsup' \
    --exclude 'aclImdb/train/urls_unsup.txt'
tar -czf .gpu_data/aclImdb_cut.tgz -C .gpu_data aclImdb && rm -rf .gpu_data/aclImdb
du -sh .whl .gpu_data
