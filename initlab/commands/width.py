"""``initlab width``: the best learning rate across widths under SP, μP and NTK, with a coordinate check."""
from __future__ import annotations

from initlab.commands.common import add_flat_experiment_options, run_flat_experiment
from initlab.experiments import width, width_report
from initlab.options import EXIT_CODES_HELP, Flag

NAME = "width"

WIDTH_FLAGS = [
    Flag("--widths", "widths", "ints", "units per hidden layer", "N"),
    Flag("--log2-lrs", "log2_lrs", "ints", "learning rates as powers of 2 (e.g. -10 for 2^-10)", "K"),
    Flag("--parametrizations", "parametrizations", "list", "sp (the init as drawn, one lr) | mup | ntk "
         "(initlab.init.parametrization)"),
    Flag("--base-width", "base_width", int, "the width at which mup and ntk equal sp", "N"),
    Flag("--init", "init", str, "the init every parametrization starts from (torch_default: PyTorch's)"),
    Flag("--depth", "depth", int, "hidden layers", "N"),
    Flag("--activation", "activation", str, "activation after each hidden layer"),
    Flag("--optimizer", "optimizer", str, "adam | adamw | sgd"),
    Flag("--batch-size", "batch_size", int, "images per step"),
    Flag("--steps", "steps", int, "training steps (one epoch over steps x batch-size images; a multiple of 100)",
         "N"),
    Flag("--seeds", "seeds", int, "seeds per width x lr x parametrization", "N"),
    Flag("--first-seed", "first_seed", int, "first seed", "N"),
    Flag("--coord-steps", "coord_steps", int, "coordinate check: Adam steps per width (0: none)", "N"),
    Flag("--coord-log2-lr", "coord_log2_lr", int, "coordinate check: its lr as a power of 2", "K"),
    Flag("--dataset", "dataset", str, "dataset name"),
    Flag("--data-dir", "data_dir", str, "folder holding the dataset's files"),
    Flag("--device", "device", str, "auto | cpu | cuda"),
]


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="μP width transfer: training loss against lr at several widths under SP, μP "
                       "and NTK, and a coordinate check (Tensor Programs V); resumable",
                       description="Train an MLP at every width x lr x parametrization x seed and report "
                       "where each width's best learning rate lies: under the standard parametrization it "
                       "moves as the net widens, under μP it stays put.", epilog=EXIT_CODES_HELP)
    add_flat_experiment_options(p, NAME, WIDTH_FLAGS, width.WidthConfig())


def run(args) -> int:
    return run_flat_experiment(NAME, args, WIDTH_FLAGS, sentences=width_report.observations)
