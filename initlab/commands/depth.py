"""``initlab depth``: plain deep nets at several depths, inits and learning rates (He et al. 2015)."""
from __future__ import annotations

from initlab import files
from initlab.commands.common import add_flat_experiment_options, run_flat_experiment
from initlab.experiments import depth, depth_report
from initlab.options import EXIT_CODES_HELP, Flag

NAME = "depth"

DEPTH_FLAGS = [
    Flag("--depths", "depths", "ints", "hidden layers of each net", "N"),
    Flag("--inits", "inits", "list", "initializations"),
    Flag("--lrs", "lrs", "floats", "learning rates (one study per depth and lr)", "LR"),
    Flag("--seeds", "seeds", int, "seeds per depth x lr x init"),
    Flag("--first-seed", "first_seed", int, "first seed"),
    Flag("--model", "model", str, "the plain net with settings, e.g. mlp:width=128,conv=true (--depths sets "
         "its depth)", "SPEC"),
    Flag("--width", "width", int, "units per hidden layer (channels with --conv)", "N"),
    Flag("--conv", "conv", "bool", "3x3 convolutions with padding 1 instead of fully connected layers"),
    Flag("--activation", "activation", str, "activation after each hidden layer"),
    Flag("--optimizer", "optimizer", str, "sgd (Nesterov momentum 0.9) | adam | adamw"),
    Flag("--batch-size", "batch_size", int, "images per step"),
    Flag("--epochs", "epochs", int, "passes over the training images"),
    Flag("--train-size", "train_size", int, "train on the first N images of a seeded shuffle (none: all)", "N"),
    Flag("--bias-init", "bias_init", float, "constant every bias starts at"),
    Flag("--dataset", "dataset", str, "dataset name"),
    Flag("--data-dir", "data_dir", str, "folder holding the dataset's files"),
    Flag("--device", "device", str, "auto | cpu | cuda"),
]


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="deep plain nets: accuracy against depth per init and learning rate, "
                       "and the signal at initialization (He et al. 2015, Fig. 3); resumable",
                       description="Train a plain net (no normalization, no skip connections) at every "
                       "depth x lr x init x seed for one epoch, probe the deepest net's signal at "
                       "initialization, and report how deep each init still trains.",
                       epilog=EXIT_CODES_HELP)
    add_flat_experiment_options(p, NAME, DEPTH_FLAGS, depth.DepthConfig())


def _sentences(out) -> list:
    return depth_report.observations(files.read_table(out, "runs"), files.read_table(out, "probe"),
                                     files.read_json(out / "config.json"))


def run(args) -> int:
    return run_flat_experiment(NAME, args, DEPTH_FLAGS, resolve=depth.resolve, sentences=_sentences)
