"""The three-layer ConvNet of Stanford's CS231n ("PyTorch" notebook of assignment 2), in three forms.

The three forms compute the same function for the same weights (``tests/test_convnets.py`` checks it):

* barebones -- ``three_layer_convnet_fn(x, params)``: explicit tensors and ``torch.nn.functional``,
  the notebook's "barebones PyTorch" part;
* ``nn.Module`` -- ``ThreeLayerConvNet``, layers as attributes and a hand-written ``forward``;
* ``nn.Sequential`` -- ``ThreeLayerConvNetSequential``, the layers as a named list.

``three_layer_convnet(form=...)`` picks one; ``initlab.models`` registers it. Every form follows the
contract of ``initlab.models``: ``forward(x, return_activations=False)``, an ``.act`` attribute, and
activation-dict keys equal to the names of the Conv/Linear modules (``conv1``, ``conv2``, ``output``).
Input channels and image size are options, so the same models take MNIST (1x28x28) and CIFAR-10 (3x32x32).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from initlab import activations
from initlab.activations import Activation

# CS231n assignment 2 (PyTorch notebook) defaults: 32 5x5 filters then 16 3x3 filters
# ("channel_1 = 32, channel_2 = 16").
CHANNEL_1, CHANNEL_2 = 32, 16
FORMS = ("module", "sequential", "barebones")


# --------------------------------------------------------------------------------------------------
# Three-layer ConvNet: the function ...
# --------------------------------------------------------------------------------------------------

Params = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def three_layer_convnet_fn(x: torch.Tensor, params: Sequence[torch.Tensor], act=F.relu,
                           return_activations: bool = False):
    """The three-layer ConvNet as one function of explicit tensors (CS231n's barebones form)::

        conv 5x5, padding 2 -> act -> conv 3x3, padding 1 -> act -> flatten -> fully connected

    Both convolutions keep the spatial size (pad = (k - 1) / 2), so the fully-connected layer sees
    ``channel_2 * H * W`` features.

    Args:
        x: images (N, C, H, W).
        params: ``(conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b)`` in PyTorch's layouts:
            conv_w1 (channel_1, C, 5, 5), conv_w2 (channel_2, channel_1, 3, 3) and
            fc_w (num_classes, channel_2 * H * W). (CS231n stores ``fc_w`` transposed and uses
            ``x.mm(fc_w)``; ``F.linear`` with the (out, in) layout is the same product.)
        act: the nonlinearity after each convolution.
        return_activations: also return ``{"conv1", "conv2", "output"}`` post-activation outputs.

    Example:
        >>> p = [torch.zeros(4, 1, 5, 5), torch.zeros(4), torch.zeros(2, 4, 3, 3), torch.zeros(2),
        ...      torch.zeros(10, 2 * 8 * 8), torch.arange(10.0)]
        >>> three_layer_convnet_fn(torch.ones(3, 1, 8, 8), p).argmax(1).tolist()
        [9, 9, 9]
    """
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h1 = act(F.conv2d(x, conv_w1, conv_b1, padding=2))           # (N, channel_1, H, W)
    h2 = act(F.conv2d(h1, conv_w2, conv_b2, padding=1))          # (N, channel_2, H, W)
    scores = F.linear(h2.flatten(1), fc_w, fc_b)                 # (N, num_classes)
    if return_activations:
        return scores, {"conv1": h1, "conv2": h2, "output": scores}
    return scores


# --------------------------------------------------------------------------------------------------
# ... the nn.Module ...
# --------------------------------------------------------------------------------------------------

class ThreeLayerConvNet(nn.Module):
    """The three-layer ConvNet as an ``nn.Module`` (see ``three_layer_convnet_fn`` for the layers)."""

    def __init__(self, activation: str = "relu", in_channels: int = 1, image_size: int = 28,
                 channel_1: int = CHANNEL_1, channel_2: int = CHANNEL_2, num_classes: int = 10) -> None:
        super().__init__()
        self.act = activations.get(activation)
        self.conv1 = nn.Conv2d(in_channels, channel_1, 5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, 3, padding=1)
        self.output = nn.Linear(channel_2 * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor, return_activations: bool = False):
        f = self.act.fn
        acts: Dict[str, torch.Tensor] = {}
        x = acts["conv1"] = f(self.conv1(x))                      # (N, channel_1, H, W)
        x = acts["conv2"] = f(self.conv2(x))                      # (N, channel_2, H, W)
        logits = acts["output"] = self.output(x.flatten(1))       # (N, num_classes)
        return (logits, acts) if return_activations else logits


class ThreeLayerConvNetBarebones(ThreeLayerConvNet):
    """The barebones form behind a module: ``forward`` calls ``three_layer_convnet_fn`` on the
    tensors. The ``nn.Conv2d`` / ``nn.Linear`` attributes only *hold* the parameters (so
    initializers find them by type and the engine by name); they are never called.

    One consequence: ``lsuv`` measures each layer's output with a forward hook on its module, and
    these modules never run, so ``lsuv`` raises "layer 'conv1' was not called" for this form.
    """

    def params(self) -> Params:
        return (self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias,
                self.output.weight, self.output.bias)

    def forward(self, x: torch.Tensor, return_activations: bool = False):
        return three_layer_convnet_fn(x, self.params(), self.act.fn, return_activations)


# --------------------------------------------------------------------------------------------------
# ... and the nn.Sequential
# --------------------------------------------------------------------------------------------------

class ActivationLayer(nn.Module):
    """An ``initlab.activations`` function as a module, for ``nn.Sequential``."""

    def __init__(self, act: Activation) -> None:
        super().__init__()
        self.fn = act.fn
        self.name = act.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class ThreeLayerConvNetSequential(nn.Sequential):
    """The three-layer ConvNet as a named ``nn.Sequential``. ``forward`` walks the children like
    ``nn.Sequential`` does and, when asked, files each activation layer's output under the name of
    the Conv/Linear layer before it (and the logits under ``output``)."""

    def __init__(self, activation: str = "relu", in_channels: int = 1, image_size: int = 28,
                 channel_1: int = CHANNEL_1, channel_2: int = CHANNEL_2, num_classes: int = 10) -> None:
        act = activations.get(activation)
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, channel_1, 5, padding=2)),
            ("act1", ActivationLayer(act)),
            ("conv2", nn.Conv2d(channel_1, channel_2, 3, padding=1)),
            ("act2", ActivationLayer(act)),
            ("flatten", nn.Flatten()),
            ("output", nn.Linear(channel_2 * image_size * image_size, num_classes)),
        ]))
        self.act = act

    def forward(self, x: torch.Tensor, return_activations: bool = False):
        acts: Dict[str, torch.Tensor] = {}
        last: Optional[str] = None                     # the last Conv/Linear layer passed
        for name, layer in self.named_children():
            x = layer(x)
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                last = name
            elif isinstance(layer, ActivationLayer) and last is not None:
                acts[last] = x
        acts["output"] = x
        return (x, acts) if return_activations else x


def three_layer_convnet(activation: str = "relu", in_channels: int = 1, image_size: int = 28,
                        channel_1: int = CHANNEL_1, channel_2: int = CHANNEL_2, num_classes: int = 10,
                        form: str = "module") -> nn.Module:
    """``form``: ``module`` (default), ``sequential`` or ``barebones`` -- the same function and the
    same parameter names (``conv1.weight`` ... ``output.bias``), so state dicts move between them."""
    classes = {"module": ThreeLayerConvNet, "sequential": ThreeLayerConvNetSequential,
               "barebones": ThreeLayerConvNetBarebones}
    if form not in classes:
        raise ValueError(f"unknown form {form!r}; choose from: {', '.join(FORMS)}")
    return classes[form](activation, in_channels, image_size, channel_1, channel_2, num_classes)
