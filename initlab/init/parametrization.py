r"""Width parametrizations -- standard (SP), μP and NTK -- as data: per-parameter init, forward and
learning-rate multipliers, relative to a base width.

A parametrization says how a layer's init, its forward multiplier and its learning rate change as the
network gets wider. Everything is relative to a *base* model (the same architecture at
``base_width``), as in ``mup`` (microsoft/mup, ``set_base_shapes``): a dimension of a parameter
*scales with width* when it differs between the base model and a wider "delta" model, and its width
multiplier is ``r = size / base size`` (1 for a dimension that does not scale). A weight is
(fan_out, fan_in, *kernel); with ``r_in``, ``r_out`` its fan-in and fan-out multipliers, its kind is

* **input** weight: only fan_out scales (784 -> width); **hidden**: both scale (width -> width);
  **output** (readout): only fan_in scales (width -> 10); **fixed**: neither;
* **bias**: a bias whose size scales (a hidden layer's); **output bias**: the readout's (its size does
  not scale); **fixed bias**: any other that does not.

At ``width == base_width`` every multiplier is 1: the three parametrizations are the same network
there, and only differ in how they scale away from it (the convention of Yang et al. 2022, §3).

The table (the stored parameter ``w``; the layer computes ``forward · (w x) + b``; "init" multiplies
what the ``--inits`` init drew, see below; ``r = r_in`` for the readout, ``r_out`` for input weights and
biases)::

                 | input w       | hidden w     | output w (readout)   | bias          | output / fixed bias
    -------------+---------------+--------------+----------------------+---------------+--------------------
    sp   init    | 1             | 1            | 1                    | 1             | 1
         forward | 1             | 1            | 1                    | -             | -
         Adam lr | 1             | 1            | 1                    | 1             | 1
         SGD lr  | 1             | 1            | 1                    | 1             | 1
    mup  init    | 1             | 1            | 0, or sqrt(r) with   | 1             | 0 (readout, with
                 |               |              |   zero_readout=0     |               |   zero_readout=1); 1
         forward | 1             | 1            | 1/r                  | -             | -
         Adam lr | 1             | 1/r_in       | 1                    | 1             | 1
         SGD lr  | r_out         | r_out/r_in   | r                    | r_out         | 1
    ntk  init    | 1             | sqrt(r_in)   | sqrt(r)              | 1             | 1
         forward | 1             | 1/sqrt(r_in) | 1/sqrt(r)            | -             | -
         Adam lr | 1/sqrt(r_out) | 1/r_in       | 1/sqrt(r)            | 1/sqrt(r_out) | 1
         SGD lr  | 1             | 1            | 1                    | 1             | 1

Weight decay is divided by the lr multiplier (``mup``'s MuAdam / MuSGD: lr x decay stays put).

In variances, with the init of unit gain (``lecun_normal``: Var = 1/fan_in): SP draws Var(w) = 1/fan_in
everywhere; μP the same for input and hidden weights, and the readout 0 (or 1/base_fan_in: constant in
width, "Init. Var. 1" of Table 3); NTK Var(w) = 1/base_fan_in for hidden and readout weights -- the
N(0, 1) weights of Jacot et al. (2018) up to the constant 1/base_fan_in -- with the forward multiplier
sqrt(base_fan_in / fan_in), i.e. Jacot's 1/sqrt(fan_in) up to the same constant, folded in so that NTK
is SP at the base width.

**μP** is Table 3 of Tensor Programs V (the "alternative, equivalent μP formulation" that ``mup``
implements), written relative to the base model as ``mup`` does: input weights and all biases keep
their init, Adam lr x 1 and SGD lr x fan_out; hidden weights keep a 1/fan_in init, Adam lr x 1/fan_in,
SGD lr x 1 (fan_out/fan_in for a non-square one); the readout is ``MuReadout``: ``W x / r`` (with
``zero_readout=1``, ``mup.MuReadout(readout_zero_init=True)``: W and b start at 0), Adam lr x 1, SGD lr
x fan_in. **NTK** (Jacot et al. 2018) is c = 0 of the abc-parametrizations of Tensor Programs IV (Yang &
Hu 2021): SGD lr x 1 everywhere. For Adam, whose update is ~lr per entry whatever the gradient's scale,
the same counting (features move by O(1/sqrt(width)), the output by O(1) per step) gives lr x
1/sqrt(r_in · r_out): derived here, not a table of those papers.

**The init composes with ``--inits``** (as in ``mup``, which keeps the user's init and rescales it by
base shapes): every weight is drawn by the chosen init first -- a fan-in init (He, LeCun, PyTorch's
default) already has μP's 1/fan_in for input and hidden weights -- and then multiplied by ``init``:
the readout is zeroed (μP), or ``w = drawn / forward`` (NTK; the network computes at init exactly
what SP computes with the same draw). Biases keep the lab's width-independent bias init (a constant or
a distribution with no fans), which is what μP asks of them; ``mup`` multiplies biases by
sqrt(r_in) only to undo PyTorch's 1/sqrt(fan_in) default bias, which a study never draws.

Paper: Greg Yang, Edward J. Hu, Igor Babuschkin, Szymon Sidor, Xiaodong Liu, David Farhi, Nick Ryder,
Jakub Pachocki, Weizhu Chen, Jianfeng Gao (2022), "Tensor Programs V: Tuning Large Neural Networks via
Zero-Shot Hyperparameter Transfer", arXiv:2203.03466 (Table 3; Table 8 the original form). Also:
Yang & Hu (2021), "Tensor Programs IV: Feature Learning in Infinite-Width Neural Networks" (ICML;
abc-parametrizations, SP / NTK / μP); Jacot, Gabriel & Hongler (2018), "Neural Tangent Kernel" (NeurIPS).

Example:
    >>> shapes = {"fc1.weight": (256, 784), "fc1.bias": (256,), "fc2.weight": (256, 256),
    ...           "fc2.bias": (256,), "output.weight": (10, 256), "output.bias": (10,)}
    >>> base = {k: tuple(64 if d == 256 else d for d in v) for k, v in shapes.items()}
    >>> delta = {k: tuple(128 if d == 256 else d for d in v) for k, v in shapes.items()}
    >>> table = scalings("mup:base_width=64", shapes, base, delta)
    >>> [(s.kind, s.lr_mult("adam")) for s in table.values()][:3]
    [('input', 1.0), ('bias', 1.0), ('hidden', 0.25)]
    >>> table["output.weight"].forward_mult, table["output.weight"].init_mult
    (0.25, 0.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import nn

from initlab.registry import split_spec

#: name -> {option: default}. ``base_width``: the width at which the parametrization is SP;
#: ``zero_readout``: 1 starts μP's readout at 0 (``MuReadout(readout_zero_init=True)``), 0 rescales it.
PARAMETRIZATIONS: Dict[str, Dict[str, int]] = {
    "sp": {},
    "mup": {"base_width": 64, "zero_readout": 1},
    "ntk": {"base_width": 64},
}

Shapes = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class Scaling:
    """One parameter's place in a parametrization: its kind, its fan multipliers and the multipliers
    it gets (see the module's table). ``forward_mult`` is the layer's: ``forward · (w x) + b``, 1 on
    biases."""
    name: str                 # "fc2.weight"
    kind: str                 # weights: input | hidden | output | fixed; biases: bias | output_bias | fixed_bias
    r_in: float               # fan_in / base fan_in (1 where fan_in does not scale with width)
    r_out: float              # fan_out / base fan_out
    init_mult: float          # stored parameter = init_mult x what the --inits init drew
    forward_mult: float
    adam_lr_mult: float
    sgd_lr_mult: float

    def lr_mult(self, optimizer: str) -> float:
        """The learning-rate multiplier under ``optimizer`` (adam and adamw: Adam's column; sgd: SGD's)."""
        return self.sgd_lr_mult if optimizer == "sgd" else self.adam_lr_mult

    def init_std(self, drawn_std: float) -> float:
        """The std of the stored parameter when the init drew it with std ``drawn_std``."""
        return self.init_mult * drawn_std


def parse(spec: str) -> Tuple[str, Dict[str, int]]:
    """``"mup:base_width=64"`` -> ``("mup", {"base_width": 64, "zero_readout": 1})``, every option
    resolved; a one-line ``ValueError`` names an unknown name or option or a bad value.

    Example:
        >>> parse("ntk:base_width=32")
        ('ntk', {'base_width': 32})
    """
    name, given = split_spec(spec, "parametrization")
    if name not in PARAMETRIZATIONS:
        raise ValueError(f"unknown parametrization {name!r}; choose from: {', '.join(PARAMETRIZATIONS)}")
    valid = PARAMETRIZATIONS[name]
    for key, value in given.items():
        if key not in valid:
            raise ValueError(f"unknown parameter {key!r} for parametrization {name!r}; valid: "
                             f"{', '.join(valid) or 'none'}")
        if key == "base_width" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"{name}: need base_width an integer >= 1, got {value!r}")
        if key == "zero_readout" and value not in (0, 1):
            raise ValueError(f"{name}: need zero_readout 0 or 1, got {value!r}")
    return name, {**valid, **given}


def _kind(is_weight: bool, in_scales: bool, out_scales: bool) -> str:
    if not is_weight:
        return "bias" if out_scales else "fixed_bias"
    return {(False, True): "input", (True, True): "hidden", (True, False): "output",
            (False, False): "fixed"}[(in_scales, out_scales)]


def scale(name: str, kind: str, r_in: float, r_out: float, parametrization: str,
          zero_readout: int = 1) -> Scaling:
    """The :class:`Scaling` of one parameter of ``kind`` with fan multipliers ``r_in``, ``r_out``
    under ``parametrization`` (one column of the module's table).

    Example:
        >>> scale("fc2.weight", "hidden", 4.0, 4.0, "mup").adam_lr_mult
        0.25
        >>> scale("fc2.weight", "hidden", 4.0, 4.0, "ntk").forward_mult
        0.5
    """
    init = forward = adam = sgd = 1.0
    if parametrization == "mup":                          # Tensor Programs V, Table 3, as in mup
        if kind == "hidden":
            adam, sgd = 1.0 / r_in, r_out / r_in
        elif kind in ("input", "bias"):
            sgd = r_out
        elif kind == "output":
            init = 0.0 if zero_readout else math.sqrt(r_in)
            forward, sgd = 1.0 / r_in, r_in
        elif kind == "output_bias" and zero_readout:
            init = 0.0                                    # MuReadout(readout_zero_init=True) zeroes its bias
    elif parametrization == "ntk":                        # Jacot et al. 2018; TP IV's c = 0
        if kind in ("hidden", "output"):
            forward = 1.0 / math.sqrt(r_in)
            init = math.sqrt(r_in)                        # w = drawn / forward: SP's function at init
        if kind not in ("fixed_bias", "output_bias"):
            adam = 1.0 / math.sqrt(r_in * r_out)
    elif parametrization != "sp":
        raise ValueError(f"unknown parametrization {parametrization!r}; choose from: {', '.join(PARAMETRIZATIONS)}")
    return Scaling(name, kind, r_in, r_out, init, forward, adam, sgd)


def scalings(spec: str, shapes: Shapes, base_shapes: Shapes, delta_shapes: Shapes) -> Dict[str, Scaling]:
    """Every parameter's :class:`Scaling` under ``spec``, from its shape in the model (``shapes``,
    {parameter name: shape}), in the base model (``base_width``) and in a "delta" model of another
    width (which dimensions scale: those that differ between base and delta, as ``mup``'s
    ``set_base_shapes(model, base, delta=delta)``). Weights are (fan_out, fan_in, *kernel).

    ``r = shape / base shape`` per scaling dimension; see the module's table for what each kind gets.
    """
    name, options = parse(spec)
    if not (set(shapes) == set(base_shapes) == set(delta_shapes)):
        raise ValueError("the model, its base and its delta model must have the same parameters")
    kinds, ratios = {}, {}
    for p, shape in shapes.items():
        base, delta = tuple(base_shapes[p]), tuple(delta_shapes[p])
        if not (len(shape) == len(base) == len(delta)):
            raise ValueError(f"{p}: shapes of different ranks {tuple(shape)}, {base}, {delta}")
        is_weight = len(shape) >= 2
        scales = [b != d for b, d in zip(base, delta)]
        out_scales, in_scales = scales[0], is_weight and scales[1]
        kinds[p] = _kind(is_weight, in_scales, out_scales)
        ratios[p] = (shape[1] / base[1] if in_scales else 1.0, shape[0] / base[0] if out_scales else 1.0)
    for p, k in kinds.items():                       # the readout's bias (fixed size, like any class bias)
        if k == "fixed_bias" and kinds.get(p.rsplit(".", 1)[0] + ".weight") == "output":
            kinds[p] = "output_bias"
    return {p: scale(p, kinds[p], *ratios[p], name, options.get("zero_readout", 1)) for p in shapes}


def is_trivial(table: Mapping[str, Scaling]) -> bool:
    """True when every multiplier is 1 (SP; μP with ``zero_readout=0`` or NTK at the base width)."""
    return all(s.init_mult == s.forward_mult == s.adam_lr_mult == s.sgd_lr_mult == 1.0 for s in table.values())


def forward_multipliers(table: Mapping[str, Scaling]) -> Dict[str, float]:
    """{layer name: forward multiplier} for the layers whose multiplier is not 1."""
    return {p.rsplit(".", 1)[0]: s.forward_mult for p, s in table.items()
            if p.endswith(".weight") and s.forward_mult != 1.0}


def lr_multipliers(table: Mapping[str, Scaling], names: Sequence[str], optimizer: str) -> Sequence[float]:
    """The lr multiplier of each parameter in ``names`` (in that order) under ``optimizer``."""
    return [table[n].lr_mult(optimizer) for n in names]


def apply(model: nn.Module, table: Mapping[str, Scaling]) -> nn.Module:
    """Parametrize an initialized ``model`` in place: multiply each parameter by its ``init_mult``
    (``w = init_mult · drawn``; 0 zeroes it exactly), set the model's ``multipliers`` (its forward's
    {layer: multiplier}) and attach the table as ``model.parametrization`` (which the engine reads
    for the per-parameter learning rates). A model whose forward does not honour ``multipliers``
    (no such attribute) is refused when a multiplier is not 1.

    Example:
        >>> from initlab.init.spec import initialize
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
        >>> net.multipliers = {}
        >>> _ = initialize(net, "kaiming", generator=torch.Generator().manual_seed(0))
        >>> sh = {n: tuple(p.shape) for n, p in net.named_parameters()}
        >>> base = {n: tuple(2 if d == 8 else d for d in s) for n, s in sh.items()}
        >>> delta = {n: tuple(3 if d == 8 else d for d in s) for n, s in sh.items()}
        >>> _ = apply(net, scalings("mup:base_width=2", sh, base, delta))
        >>> net.multipliers, float(net[2].weight.detach().abs().sum())
        ({'2': 0.25}, 0.0)
    """
    params = dict(model.named_parameters())
    if set(params) != set(table):
        raise ValueError("the parametrization's table does not name the model's parameters")
    multipliers = forward_multipliers(table)
    if multipliers and not isinstance(getattr(model, "multipliers", None), dict):
        raise ValueError(f"{type(model).__name__} has no forward multipliers (a 'multipliers' dict its "
                         f"forward honours), so it cannot take this parametrization")
    with torch.no_grad():
        for p, s in table.items():
            if s.init_mult == 0.0:
                params[p].zero_()
            elif s.init_mult != 1.0:
                params[p].mul_(s.init_mult)
    if multipliers:
        model.multipliers = multipliers
    model.parametrization = dict(table)
    return model
