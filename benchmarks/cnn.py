"""Benchmark: images.train_cells against a plain DataLoader loop like Liu's CIFAR-10 script.

Both train the same ConvNets (same widths, seeds, initial weights, data subset, epochs, batch 128,
AdamW lr 5e-4, random flip + 4-pixel crop) and evaluate on the whole test split after every epoch.
The plain loop is Liu's recipe on in-memory tensors: a Dataset over float [0, 1] images whose
__getitem__ applies torchvision's RandomHorizontalFlip, RandomCrop(padding=4) and Normalize to one
image, DataLoader(batch_size=128, shuffle=True, num_workers=0), ConvNet in the default memory
format, torch.optim.AdamW, model.train(), and a clean test pass through a DataLoader (batch 128,
per-image Normalize). (Liu's script itself was slower still: PIL images through ToTensor, and the test
set augmented too.) On a CPU both run on one thread (torch.set_num_threads(1)), in the same process.
With --device cuda both train on the GPU: the plain loop moves each batch there, as Liu's
script did; the engine keeps the data resident and trains the seeds of a width as one ensemble.

Data: Fashion-MNIST (Debian's dataset-fashion-mnist, via datasets.sources.load), else CIFAR-shaped random
uint8 images with random labels (the printout says which). Prints the time of each, where the plain
loop's time goes (DataLoader, train steps, evaluation; per-image transforms against collation; default
layout against channels_last), the final accuracies, and last `speedup: X.X`: on a CPU, CPU seconds
of the plain loop over the engine's (on a shared machine CPU time is less disturbed than wall time,
which is printed too); on CUDA, wall seconds (the GPU's work is not CPU time).

    python benchmarks/cnn.py [--data fashion-mnist|random] [--root resources/datasets] [--P 4096]
                             [--epochs 2] [--widths 1 2 4] [--seeds 0 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch.utils.data import DataLoader, Dataset

from scalinglab.core.errors import UserError
from scalinglab.core.seeding import derive_seed
from scalinglab.datasets.image_data import ImageData, subset, subset_indices
from scalinglab.datasets.sources import load
from scalinglab.images import training as images
from scalinglab.images.convnet import ConvNet


class TensorImages(Dataset):
    """A torchvision-style dataset over float [0, 1] images; `transform` runs per image."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def plain_loop(data: ImageData, widths, seeds, P, epochs, padding, device="cpu") -> tuple[list[dict], dict]:
    """Liu's loop; returns each cell's final accuracy and CPU seconds per part of the loop."""
    mean, std = data.meta["mean"], data.meta["std"]
    height = data.shape[1]
    train_tf = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(height, padding=padding), T.Normalize(mean, std)])
    test_set = TensorImages(data.test_x.float() / 255, data.test_y, T.Normalize(mean, std))
    results, parts = [], {"DataLoader": 0.0, "train steps": 0.0, "evaluation": 0.0}
    clock = time.process_time if device == "cpu" else _synchronized_wall_clock
    for c in widths:
        for seed in seeds:
            # Same subset and initial weights as train_cells (its derivations, see images.py).
            idx = subset_indices(data.train_y, P, derive_seed("image-subset", data.name, seed))
            train_set = TensorImages(data.train_x[idx].float() / 255, data.train_y[idx], train_tf)
            torch.manual_seed(seed)  # DataLoader shuffling and the transforms draw from the global RNG
            model = ConvNet.create(c, data.shape, data.n_classes, derive_seed("convnet-init", data.name, c, seed))
            model = model.to(device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
            train_loader = DataLoader(train_set, batch_size=128, shuffle=True)
            test_loader = DataLoader(test_set, batch_size=128)
            for _ in range(epochs):
                model.train()
                mark = clock()
                for x, y in train_loader:
                    x, y = x.to(device), y.to(device)
                    stepping = clock()
                    parts["DataLoader"] += stepping - mark
                    optimizer.zero_grad()
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    optimizer.step()
                    mark = clock()
                    parts["train steps"] += mark - stepping
                parts["DataLoader"] += clock() - mark
                mark = clock()
                model.eval()
                correct = 0
                with torch.no_grad():
                    for x, y in test_loader:
                        x, y = x.to(device), y.to(device)
                        correct += int((model(x).argmax(1) == y).sum())
                parts["evaluation"] += clock() - mark
            results.append({"width": c, "seed": seed, "val_acc": correct / len(test_set)})
    return results, parts


def _synchronized_wall_clock() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def loader_costs(data: ImageData, P: int, padding: int) -> tuple[float, float]:
    """CPU seconds for one pass of the plain DataLoader over P images, with and without the
    per-image transforms (without: indexing and collation only)."""
    x = data.train_x[:P].float() / 255
    tf = T.Compose(
        [
            T.RandomHorizontalFlip(),
            T.RandomCrop(data.shape[1], padding=padding),
            T.Normalize(data.meta["mean"], data.meta["std"]),
        ]
    )
    costs = []
    for transform in (tf, lambda image: image):
        start = time.process_time()
        for _ in DataLoader(TensorImages(x, data.train_y[:P], transform), batch_size=128, shuffle=True):
            pass
        costs.append(time.process_time() - start)
    return costs[0], costs[1]


def layout_costs(data: ImageData, c: int, steps: int = 20) -> tuple[float, float]:
    """CPU seconds per training step of ConvNet(c), batch 128, in the default and channels_last layouts."""
    x = torch.randn(128, *data.shape)
    y = torch.randint(data.n_classes, (128,))
    costs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model = ConvNet.create(c, data.shape, data.n_classes, 0).to(memory_format=layout)
        batch = x.contiguous(memory_format=layout)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
        for step in range(steps + 3):
            if step == 3:
                start = time.process_time()
            optimizer.zero_grad()
            F.cross_entropy(model(batch), y).backward()
            optimizer.step()
        costs.append((time.process_time() - start) / steps)
    return costs[0], costs[1]


def load_data(root: str, which: str) -> tuple[ImageData, str]:
    if which == "fashion-mnist":
        try:
            return load("fashion-mnist", root, download=False), "Fashion-MNIST (Debian's copy)"
        except UserError as exc:
            print(f"no Fashion-MNIST ({exc}); using random CIFAR-shaped data")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60000, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (60000,), generator=gen)
    meta = {"mean": [0.5] * 3, "std": [0.29] * 3}
    data = ImageData("random", x[:50000], y[:50000], x[50000:], y[50000:], [str(k) for k in range(10)], meta)
    return data, "random uint8 images 3x32x32, random labels (accuracies meaningless)"


def timed(fn, device="cpu"):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        choices=["fashion-mnist", "random"],
        default="fashion-mnist",
        help="random: CIFAR-shaped 3x32x32 uint8 noise (Liu's input shape)",
    )
    parser.add_argument("--root", default="resources/datasets")
    parser.add_argument("--P", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible here; run on a GPU machine or drop --device")
    torch.set_num_threads(1)  # both sides: tiny convolutions oversubscribe a shared 2-core machine

    data, source = load_data(args.root, args.data)
    padding = 4
    cells = len(args.widths) * len(args.seeds)
    print(
        f"data: {source}; P = {args.P}, test = {len(data.test_y)}, {data.shape}; widths {args.widths}, "
        f"seeds {args.seeds}: {cells} cells x {args.epochs} epochs, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ", threads 1")
    )

    # Untimed warm-up of both on the same shapes: oneDNN builds its kernels on first use, per shape.
    warm = subset(data, 256, 0)
    images.train_cells(
        warm,
        widths=args.widths,
        seeds=args.seeds[:1],
        P=256,
        epochs=1,
        augment="flip_crop",
        padding=padding,
        device=device,
    )
    plain_loop(warm, args.widths, args.seeds[:1], 256, 1, padding, device)

    frame, engine_wall, engine_cpu = timed(
        lambda: images.train_cells(
            data,
            widths=args.widths,
            seeds=args.seeds,
            P=args.P,
            epochs=args.epochs,
            augment="flip_crop",
            padding=padding,
            device=device,
        ),
        device,
    )
    print(f"engine (train_cells):  wall {engine_wall:7.1f} s  cpu {engine_cpu:7.1f} s")
    (plain, parts), plain_wall, plain_cpu = timed(
        lambda: plain_loop(data, args.widths, args.seeds, args.P, args.epochs, padding, device), device
    )
    print(f"plain DataLoader loop: wall {plain_wall:7.1f} s  cpu {plain_cpu:7.1f} s")
    # the ratio's clock: CPU time on a CPU (less disturbed by other load), wall time with a GPU
    clock, plain_s, engine_s = ("CPU", plain_cpu, engine_cpu) if device == "cpu" else ("wall", plain_wall, engine_wall)
    print(
        f"  where the plain loop's {clock} time goes: "
        + ", ".join(f"{name} {sec:.1f} s ({sec / plain_s:.0%})" for name, sec in parts.items())
    )
    with_tf, without_tf = loader_costs(data, args.P, padding)
    print(
        f"  one DataLoader pass over P images: {with_tf:.2f} s with per-image transforms, "
        f"{without_tf:.2f} s without (indexing + collation)"
    )
    if device == "cpu":
        c = max(args.widths)
        default, channels_last = layout_costs(data, c)
        print(
            f"  ConvNet({c}) step, batch 128: {default * 1e3:.1f} ms default layout, "
            f"{channels_last * 1e3:.1f} ms channels_last"
        )

    final = frame[frame["epoch"] == args.epochs].set_index(["width", "seed"])["val_acc"]
    for row in plain:
        print(
            f"  width {row['width']:2d} seed {row['seed']}: val_acc engine {final[(row['width'], row['seed'])]:.3f}"
            f"  plain {row['val_acc']:.3f}"
        )
    print(f"wall-clock ratio: {plain_wall / engine_wall:.1f}")
    print(f"speedup: {plain_s / engine_s:.1f}")


if __name__ == "__main__":
    main()
