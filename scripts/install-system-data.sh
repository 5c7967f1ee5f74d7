#!/usr/bin/env bash
# Optional system datasets: Fashion-MNIST from Debian's package, where apt is available and we are root.
# Without it, initlab falls back to the canonical download (and says so if that fails too).
set -u
[ -d /usr/share/datasets/fashion-mnist ] && exit 0
command -v apt-get >/dev/null 2>&1 || exit 0
[ "$(id -u)" = 0 ] || { echo "note: run 'sudo apt-get install dataset-fashion-mnist' for Fashion-MNIST"; exit 0; }
(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
  && echo "installed dataset-fashion-mnist" || echo "note: could not install dataset-fashion-mnist"
exit 0
