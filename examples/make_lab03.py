"""Write examples/lab03.ipynb, the lab end to end from Python, without outputs.

    python examples/make_lab03.py            # rewrites examples/lab03.ipynb
    jupyter lab examples/lab03.ipynb         # run it (about 45 CPU-seconds)

The notebook is generated so that its source stays reviewable here; tests/test_notebook.py checks
that the committed file is what this script writes, and executes it.
"""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    ("md", """\
# LAB03-1 from Python: how the initialization decides whether LeNet-5 learns

The lab end to end with `import initlab`: initialize a model, define an initializer of your own, train
LeNet-5 on MNIST under every init and several seeds, read the tables (pandas) and the report's
observations, plot, save and load. This small version (2,000 training images, 2 seeds) takes about
45 CPU-seconds; for the lab's own numbers use `train_size=None` (all 60,000 images) and `seeds=3`
or more."""),
    ("code", """\
import math

import pandas as pd
import torch

import initlab

print("inits: ", ", ".join(initlab.init_names()))
print("models:", ", ".join(initlab.model_names()))"""),
    ("md", """\
## 1. Initialize a model

`initlab.initialize(module, spec, seed=...)` fills every `Linear`/`ConvNd` layer of any `nn.Module`,
in the way of `torch.nn.init`; the same seed gives the same weights. The std of each layer's weights
under the lab's five inits, next to kaiming's formula $\\sqrt{2/\\text{fan\\_in}}$:"""),
    ("code", """\
net = initlab.build_model("lenet5")
rows = []
for spec in ["zeros", "uniform", "normal", "xavier", "kaiming"]:
    info = initlab.initialize(net, spec, seed=0)
    for layer in info["layers"]:
        w = net.get_submodule(layer).weight
        rows.append({"layer": layer, "init": spec, "std": w.std().item(),
                     "sqrt(2/fan_in)": math.sqrt(2 / w[0].numel())})
stds = pd.DataFrame(rows)
stds.pivot(index="layer", columns="init", values="std").join(
    stds.groupby("layer")["sqrt(2/fan_in)"].first()).round(4)"""),
    ("md", """\
## 2. An initializer of your own

A sparse initialization (after Martens 2010): each unit gets `k` nonzero incoming weights, drawn
from $N(0, 2/k)$ so that, as with kaiming, a ReLU layer keeps the scale of its input. Registered here,
it can be used everywhere an init name can -- in the study below too, whose worker processes receive
it."""),
    ("code", """\
@initlab.register_init("sparse", formula="k nonzero N(0, 2/k) weights per unit, the rest 0 (Martens 2010)")
def sparse(weight, *, generator, activation="relu", k=15):
    rows = weight.view(weight.shape[0], -1)            # (units, fan_in)
    rows.zero_()
    k = min(k, rows.shape[1])
    for row in rows:
        picked = torch.randperm(rows.shape[1], generator=generator)[:k]
        row[picked] = torch.randn(k, generator=generator) * math.sqrt(2 / k)


initlab.initialize(net, "sparse", seed=0)
(net.c3.weight != 0).flatten(1).sum(1)                 # nonzero weights per c3 unit"""),
    ("md", """\
## 3. The study

Every init x seed trained for one epoch (Adam, lr 1e-3, batch 32); every init of a seed sees the same
images in the same order. Two worker processes train the runs; the keywords are `initlab study`'s
flags (`lr`, `batch_size`, `activation`, `model`, `dataset`, ...)."""),
    ("code", """\
study = initlab.study(inits=["zeros", "uniform", "normal", "xavier", "kaiming", "sparse"],
                      seeds=2, train_size=2000, workers=2)
study"""),
    ("code", """\
study.runs[["init", "seed", "test_acc", "test_loss", "initial_loss", "diverged"]]"""),
    ("code", """\
study.summary.set_index("init")[["acc_mean", "acc_std", "acc_min", "initial_loss", "diverged"]]"""),
    ("md", """\
## 4. Why: the report's observations, computed from the measurements"""),
    ("code", """\
for question, sentences in study.observations.items():
    print(question)
    for sentence in sentences:
        print("  -", sentence)"""),
    ("code", "study.plot_curves()"),
    ("code", "study.plot_layer_scales()"),
    ("code", "study.plot_weights()"),
    ("md", """\
Every record is a DataFrame: here the activation std of each layer at initialization (step 0, mean
over seeds), the numbers behind the observation about signal scale."""),
    ("code", """\
at_init = study.layers[study.layers.step == 0]
at_init.pivot_table(index="layer", columns="init", values="act_std").round(4)"""),
    ("md", """\
## 5. Save, load, report

`save` writes what `initlab study --out` writes (tables, plots, `report.md`, `report.html`);
`initlab.load` reads it back, and `initlab report FOLDER` rebuilds the report from it."""),
    ("code", """\
import tempfile

folder = study.save(tempfile.mkdtemp(prefix="lab03-"))
again = initlab.load(folder)
print(sorted(p.name for p in folder.iterdir()))
all(getattr(again, t).equals(getattr(study, t)) for t in ["runs", "curves", "layers", "histograms"])"""),
    ("md", """\
## 6. Signal propagation at initialization (no training)

A plain 10-layer, 256-unit net, one batch of real images: the std of the signal at every layer,
measured and as the variance formula predicts it."""),
    ("code", """\
probe = initlab.probe(inits=["xavier", "kaiming", "sparse"], activations=["relu", "tanh"], depth=10,
                      seeds=1)
probe"""),
    ("code", "probe.plot()"),
    ("md", """\
## 7. Width: does the best learning rate survive a wider net?

Under the standard parametrization the best Adam learning rate moves as the net widens; under μP
(Tensor Programs V) it stays put. A small version of `initlab width` (the README has the full run)."""),
    ("code", """\
width = initlab.width(widths=[32, 128], log2_lrs=[-10, -8, -6], parametrizations=["sp", "mup"], steps=200,
                      seeds=1, coord_steps=2)
width"""),
]


def notebook() -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                             for kind, src in CELLS])
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for k, cell in enumerate(nb.cells):   # stable ids: the file changes only when a cell does
        cell.id = f"cell-{k:02d}"
    return nb


def text() -> str:
    return nbformat.writes(notebook()) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "lab03.ipynb"
    path.write_text(text())
    print(f"wrote {path}")
