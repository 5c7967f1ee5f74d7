"""One training run's hyperparameters (``TrainConfig``) and the optimizers and schedules it may name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class TrainConfig:
    """Hyperparameters of one training run. Defaults are the lab's: Adam, lr 1e-3, batch 32, 1 epoch."""
    epochs: int = 1                 # full passes over the training images
    lr: float = 1e-3                # peak learning rate (the constant one unless a schedule is set)
    batch_size: int = 32            # images per step
    optimizer: str = "adam"         # adam | adamw | sgd (sgd uses Nesterov momentum 0.9)
    weight_decay: float = 0.0       # L2 (adam, sgd) or decoupled (adamw) decay
    schedule: str = "constant"      # constant | onecycle (cosine warm-up from lr/25 to lr, cosine down to lr/25e3)
    warmup: float = 0.2             # onecycle: fraction of the steps spent warming up
    label_smoothing: float = 0.0    # cross-entropy target smoothing
    normalize: bool = False         # standardize pixels with the dataset's mean/std instead of [0, 1]
    train_size: Optional[int] = None  # train on the first N images of a seeded shuffle (None = all)
    record_every: int = 100         # steps between record points; 4x denser over the first 2 intervals
    hist_every: int = 300           # with hist_moments 0 (the engine's only: commands refuse it, having no flag for
                                    # this): steps between weight histograms (plus the last step)
    hist_moments: int = 8           # weight histograms at this many moments spread over the run (first and
                                    # last step included; each at the record point nearest its share)
    heldout_size: int = 500         # held-out images for the accuracy curve (at every record point)
    probe_size: int = 256           # of those, images used for activation statistics
    record: bool = True             # False: only final metrics (used to measure recording overhead)


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle")
