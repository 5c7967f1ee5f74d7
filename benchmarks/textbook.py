"""The textbook LAB03-1 loop, written the way the lab's students write it: the yardstick of `make bench`.

    python benchmarks/textbook.py --init kaiming --seed 0      # one model, prints its test accuracy

An ``nn.Module`` LeNet-5 (average pooling, ReLU), a ``DataLoader`` over a per-sample MNIST dataset,
batch 32, shuffled, Adam at lr 1e-3, one epoch on torch's default threads (one per core), then the
test accuracy over the 10,000 test images. The only things taken from initlab are the MNIST files
(``initlab.data``, where torchvision would download them) and the initializer (``initlab.init``, so
that a seed draws the same weights as ``initlab study`` does and accuracies compare seed for seed).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from initlab import data, init


class MNIST(Dataset):                       # what torchvision.datasets.MNIST + ToTensor() do
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float().div(255).unsqueeze(0), int(self.labels[i])


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = F.pad(x, (2, 2, 2, 2))                       # 28x28 -> 32x32, as in the paper
        x = F.avg_pool2d(F.relu(self.c1(x)), 2)
        x = F.avg_pool2d(F.relu(self.c3(x)), 2)
        x = F.relu(self.c5(x)).flatten(1)
        return self.output(F.relu(self.f6(x)))


def train(init_name: str, seed: int, n_images: int = 60000, device: str = "cpu"):
    """(training seconds, test accuracy) of one model."""
    ds = data.load_dataset("mnist", quiet=True)
    train_set = MNIST(ds.train_images[:n_images], ds.train_labels[:n_images])
    loader = DataLoader(train_set, batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model = LeNet5()       # drawn on the CPU (the generator's device), so every device starts alike
    init.initialize(model, init_name, generator=torch.Generator().manual_seed(10_000 + seed))
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        x = ds.test_images.float().div(255).unsqueeze(1).to(device)
        return seconds, (model(x).argmax(1).cpu() == ds.test_labels).float().mean().item()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default="kaiming")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=60000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's, one per core)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"test_acc {train(a.init, a.seed, a.train_size, a.device)[1]:.4f}")
