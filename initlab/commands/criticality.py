"""``initlab criticality``: order, chaos and trainable depth, computed (mean-field theory) and measured."""
from __future__ import annotations

from initlab.commands.common import add_flat_experiment_options, run_flat_experiment
from initlab.experiments import criticality, criticality_report
from initlab.options import EXIT_CODES_HELP, Flag

NAME = "criticality"

CRITICALITY_FLAGS = [
    Flag("--activation", "activation", str, "activation of every hidden layer"),
    Flag("--sigma-w2s", "sigma_w2s", "floats", "weight variances sigma_w^2 (W ~ N(0, sigma_w^2/fan_in)) to "
         "train", "S"),
    Flag("--critical", "critical", "bool", "also train at the critical sigma_w^2 of --sigma-b2 (computed), and "
         "Gaussian against orthogonal weights there"),
    Flag("--sigma-b2", "sigma_b2", float, "bias variance sigma_b^2 (b ~ N(0, sigma_b^2))", "B"),
    Flag("--depths", "depths", "ints", "hidden layers of the trained nets", "N"),
    Flag("--width", "width", int, "units per hidden layer of the trained nets", "N"),
    Flag("--seeds", "seeds", int, "seeds per sigma_w^2 x depth", "N"),
    Flag("--first-seed", "first_seed", int, "first seed", "N"),
    Flag("--optimizer", "optimizer", str, "sgd (Nesterov momentum 0.9) | adam | adamw"),
    Flag("--lr", "lr", float, "learning rate"),
    Flag("--batch-size", "batch_size", int, "images per step"),
    Flag("--steps", "steps", int, "training steps (one epoch over steps x batch-size images)", "N"),
    Flag("--isometry-depth", "isometry_depth", int, "layers of the nets whose Jacobian spectrum is computed, "
         "and of the Gaussian-against-orthogonal training at criticality", "N"),
    Flag("--isometry-width", "isometry_width", int, "units of the nets whose Jacobian spectrum is computed", "N"),
    Flag("--map-width", "map_width", int, "units of the random nets whose lengths and correlations are measured",
         "N"),
    Flag("--map-depth", "map_depth", int, "layers of those nets", "N"),
    Flag("--map-seeds", "map_seeds", int, "nets measured per sigma_w^2 (the mean is shown)", "N"),
    Flag("--dataset", "dataset", str, "dataset name"),
    Flag("--data-dir", "data_dir", str, "folder holding the dataset's files"),
    Flag("--device", "device", str, "auto | cpu | cuda"),
]


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="order, chaos and dynamical isometry: the mean-field theory of "
                       "initialization next to measurement, and how deep each sigma_w^2 trains; resumable",
                       description="Compute the critical line, lengths, correlations and depth scales of "
                       "the mean-field theory (Poole et al. 2016, Schoenholz et al. 2017), measure them on "
                       "random nets, compare Jacobian spectra of Gaussian and orthogonal weights at "
                       "criticality (Pennington et al. 2017), and train a sigma_w^2 x depth grid of MLPs.",
                       epilog=EXIT_CODES_HELP)
    add_flat_experiment_options(p, NAME, CRITICALITY_FLAGS, criticality.CriticalityConfig())


def run(args) -> int:
    return run_flat_experiment(NAME, args, CRITICALITY_FLAGS, sentences=criticality_report.observations)
