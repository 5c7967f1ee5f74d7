"""Every setting of every experiment, defined once: its help, its metavar and, rarely, its flag.

A setting is a field of an experiment's config dataclass (``lr``, ``seeds``, ``train.batch_size``); its
name, its type (the field's annotation) and its help are the same in every command and in Python.
:func:`initlab.options.flags_of` turns a config class into its command-line flags: every field
(nested dataclasses included, as dotted paths) whose name is defined here, except those the class names
in ``NOT_FLAGS`` (a field the experiment fixes). A field without a definition is internal (the held-out
size, the record schedule's fine print) and is no flag anywhere. ``tests/test_settings.py`` holds that
a setting has one type in every config that has it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class Setting:
    help: str
    metavar: Optional[str] = None
    flag: Optional[str] = None          # the flag when it is not --name-with-dashes (--from for source)
    none: Optional[str] = None          # what None means, said where a config's field may be None


SETTINGS: Dict[str, Setting] = {
    # what is compared
    "inits": Setting("initializations to compare (names with optional :k=v params), e.g. 'zeros uniform "
                     "normal xavier kaiming' or 'kaiming_uniform:mode=fan_out' (initlab inits lists them)"),
    "init": Setting("the init every parametrization starts from (torch_default: PyTorch's)"),
    "seeds": Setting("number of seeds, from --first-seed: a seed is one weight draw and one data order, the "
                     "same for every run of the plan", "N"),
    "first_seed": Setting("first seed", "N"),
    "activations": Setting("activations, 'linear' included"),
    "parametrizations": Setting("sp (the init as drawn, one lr) | mup | ntk (initlab.init.parametrization)"),
    # the model
    "model": Setting("model, optionally with settings: mlp:width=256,depth=30, two_layer_fc:hidden=4000 "
                     "(initlab summary --model SPEC shows its layers)", "SPEC"),
    "activation": Setting("activation after each hidden layer"),
    "pool": Setting("LeNet-5 subsampling: avg (the paper's) or max"),
    "c3_table": Setting("use LeNet-5's partial C3 connection table (Table I)"),
    "width": Setting("units per hidden layer of the mlp, channels with --conv", "N", none="the model's own"),
    "widths": Setting("units per hidden layer, one net each", "N"),
    "base_width": Setting("the width at which mup and ntk equal sp", "N"),
    "depth": Setting("hidden layers of the mlp", "N", none="the model's own"),
    "depths": Setting("hidden layers, one net each", "N"),
    "conv": Setting("mlp: 3x3 convolutions with padding 1 instead of fully connected layers"),
    "parametrization": Setting("width parametrization: sp, mup:base_width=64 (Tensor Programs V: hidden Adam "
                               "lr x base/width, readout W x base/width, zero-initialized) or "
                               "ntk:base_width=64 (forward x sqrt(base/fan_in)); --model mlp or "
                               "two_layer_fc", "SPEC"),
    "bias_init": Setting("constant every bias starts at, or a distribution it is drawn from "
                         "(normal:std=S, uniform:low=A,high=B)", "B"),
    # data
    "dataset": Setting("dataset name (initlab data lists them)"),
    "data_dir": Setting("folder holding the dataset's files (the four IDX files, raw or .gz); else "
                        "$INITLAB_DATA_DIR, the cache, then the download sources"),
    "source": Setting("source (pretraining) dataset", "DATASET", flag="--from"),
    "target": Setting("target dataset", "DATASET", flag="--to"),
    "train_size": Setting("train on the first N images of a seeded shuffle", "N", none="all"),
    "images": Setting("probe batch (none: 512; 32 with --conv, ~5 s per init x activation x seed on 2 "
                      "cores)", "N"),
    # training
    "device": Setting("auto | cpu | cuda (auto: cuda when available)"),
    "seeds_per_stack": Setting("seeds trained together in one batched stack (0 = all; smaller stacks lose "
                               "less to Ctrl-C and use less memory)"),
    "epochs": Setting("passes over the training images"),
    "steps": Setting("training steps (one epoch over steps x batch-size images)", "N"),
    "lr": Setting("learning rate"),
    "lrs": Setting("learning rates, one study each", "LR"),
    "log2_lrs": Setting("learning rates as powers of 2 (e.g. -10 for 2^-10)", "K"),
    "batch_size": Setting("images per step"),
    "optimizer": Setting("adam | adamw | sgd (Nesterov momentum 0.9)"),
    "schedule": Setting("constant | onecycle"),
    "weight_decay": Setting("weight decay"),
    "label_smoothing": Setting("cross-entropy label smoothing"),
    "normalize": Setting("standardize pixels with the dataset's mean/std"),
    # records
    "record_every": Setting("steps between record points, 4x denser over the first two"),
    "hist_moments": Setting("weight histograms at this many moments spread over the run (first and last "
                            "step included)", "N"),
    # transfer
    "pretrain_epochs": Setting("epochs of pretraining on the source"),
    "pretrain_size": Setting("pretrain on the first N source images of a fixed shuffle", "N", none="all"),
    "from_checkpoint": Setting("start every seed from this checkpoint instead of pretraining", "PATH"),
    "modes": Setting("transfer modes (none: --modes '')", "MODE"),
    "target_sizes": Setting("numbers of target training images (all of the target's training images at "
                            "most)", "N"),
    "min_steps": Setting("each target size trains at least this many steps ..."),
    "target_epochs": Setting("... and at least this many epochs"),
    # criticality
    "sigma_w2s": Setting("weight variances sigma_w^2 (W ~ N(0, sigma_w^2/fan_in)) to train", "S"),
    "critical": Setting("also train at the critical sigma_w^2 of --sigma-b2 (computed), and Gaussian "
                        "against orthogonal weights there"),
    "sigma_b2": Setting("bias variance sigma_b^2 (b ~ N(0, sigma_b^2))", "B"),
    "isometry_depth": Setting("layers of the nets whose Jacobian spectrum is computed, and of the "
                              "Gaussian-against-orthogonal training at criticality", "N"),
    "isometry_width": Setting("units of the nets whose Jacobian spectrum is computed", "N"),
    "map_width": Setting("units of the random nets whose lengths and correlations are measured", "N"),
    "map_depth": Setting("layers of those nets", "N"),
    "map_seeds": Setting("nets measured per sigma_w^2 (the mean is shown)", "N"),
    # width
    "coord_steps": Setting("coordinate check: Adam steps per width (0: none)", "N"),
    "coord_log2_lr": Setting("coordinate check: its lr as a power of 2", "K"),
}


def flag_name(name: str) -> str:
    """The command-line flag of setting ``name``: ``--train-size`` (or its own, ``--from``)."""
    own = SETTINGS[name].flag if name in SETTINGS else None
    return own or "--" + name.replace("_", "-")
