#!/usr/bin/env bash
# One short GPU check of `agqg score` speed, for a lent GPU machine (about 4 minutes, installs nothing).
#
# Prints images/s of AGQG scoring and of the bare vision tower for randomly initialised ViT-B/16 and ViT-L/14
# shapes at fp16 and bf16 autocast on ready tensors, then end-to-end `agqg score` runs (ViT-B/16, 8,192 512x512
# JPEGs, 8 DataLoader workers decoding; fewer images measure mostly the workers' start-up), then the training-step
# benchmark on the GPU. Needs only python3 with torch, transformers, pillow, numpy and tqdm,
# which the machine's image has; the repository is used in place through PYTHONPATH.
#
#     bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
HF_HOME="$(mktemp -d)"
export HF_HOME
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 150 python3 benchmarks/bench_scoring.py --device cuda --parts tensors --models b16,l14 \
    --dtypes fp16,bf16 --batch-size 256 --repeats 10 || echo "tensors part failed or timed out (rc=$?)"
timeout 120 python3 benchmarks/bench_scoring.py --device cuda --parts e2e --models b16 \
    --batch-size 256 --e2e-images 8192 --e2e-repeats 2 --workers 8 || echo "e2e part failed or timed out (rc=$?)"
timeout 100 python3 benchmarks/bench_training.py --device cuda --parts steps --batch_size 64 --steps 10 \
    || echo "training part failed or timed out (rc=$?)"
