#!/usr/bin/env bash
# The GPU check in one command, from a fresh checkout on the GPU machine (no network, no cache):
#
#   bash benchmarks/gpu_check.sh                        # writes $OUT/gpu_check.json (or runs/gpu_check/)
#   bash benchmarks/gpu_check.sh --device cpu --quick   # the same script end to end on a CPU
#
# Needs .gpucarry/ carried next to the checkout (made here by benchmarks/gpu_prepare.sh): MNIST in
# .gpucarry/mnist, and wheels in .gpucarry/wheels if the machine lacks a package. Arguments are
# passed on to benchmarks/gpu_check.py (--help there).
#
# What it installs: the carried wheels, if any, into /tmp/initlab-site (--no-index). initlab itself
# is used from the checkout through PYTHONPATH rather than `pip install -e .`: pyproject.toml pins
# torch==2.13.0 (for CPU machines), and pip would try to replace the GPU machine's own CUDA build of
# torch, with no network to do it. PYTHON=... chooses the interpreter (default: python3, the one that
# holds torch on the GPU machine; .venv/bin/python where a checkout has one).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if compgen -G ".gpucarry/wheels/*.whl" >/dev/null; then
    SITE=${INITLAB_SITE:-/tmp/initlab-site}
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .gpucarry/wheels/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PYTHON" -c 'import torch, numpy, matplotlib, tqdm, pytest' 2>/dev/null; then
    echo "gpu_check: $PYTHON lacks one of torch, numpy, matplotlib, tqdm, pytest;" \
         "carry its wheel in .gpucarry/wheels (WHEELS=... bash benchmarks/gpu_prepare.sh)" >&2
    exit 2
fi
if [[ ! -d .gpucarry/mnist ]]; then
    echo "gpu_check: no .gpucarry/mnist: run benchmarks/gpu_prepare.sh where the data are, and" \
         "carry .gpucarry (without it, initlab looks in its cache and then the network)" >&2
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
