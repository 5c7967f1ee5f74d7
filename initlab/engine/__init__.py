"""The training engine: many models of one architecture trained at once as one batched stack.

``config`` holds a run's hyperparameters, ``optim`` the fused optimizers and schedules, ``threads``
the cores a lone stack may use, ``training`` the loop (data order, the stack's step, final evaluation),
``lenet_kernel`` the hand-written LeNet-5 forward/backward, ``linear_chain`` fully connected stacks as
batched matrix products, ``record`` what is measured during
training, ``tensorboard`` the optional TensorBoard writer.
"""
from initlab.engine.config import OPTIMIZERS, SCHEDULES, TrainConfig
from initlab.engine.optim import StackOptimizer, make_optimizer, onecycle_lrs
from initlab.engine.threads import ThreadGovernor, busy_elsewhere, cpu_cores
from initlab.engine.training import (
    MNIST_MEAN,
    MNIST_STD,
    Stack,
    StackResult,
    TrainData,
    data_order,
    keep_freed_memory,
    prepare,
    record_schedule,
    steps_for,
    to_float_images,
    train_reference,
    train_stack,
)

__all__ = [
    "MNIST_MEAN", "MNIST_STD", "OPTIMIZERS", "SCHEDULES", "Stack", "StackOptimizer", "StackResult",
    "ThreadGovernor", "TrainConfig", "TrainData", "busy_elsewhere", "cpu_cores", "data_order",
    "keep_freed_memory", "make_optimizer", "onecycle_lrs", "prepare", "record_schedule", "steps_for",
    "to_float_images", "train_reference", "train_stack",
]
