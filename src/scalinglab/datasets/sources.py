"""Where image datasets come from, and how each becomes one compact tensor file.

`prepare(name, root)` builds `<root>/<name>/data.pt` (uint8 images N×C×H×W, int64 labels, the
train/test split and a meta dict) from one of:
  - a torchvision download (CIFAR-10/100, MNIST, Fashion-MNIST), md5-verified by torchvision
    against the CHECKSUMS table below;
  - a local directory holding the original files (`local_dir`): CIFAR's tar.gz or its pickle
    batches, or the four IDX files (raw or .gz), verified here against the same table;
  - data that ships with a package: scikit-learn's digits, and mnist1d (generated; optional package).
`load(name, root)` prepares it if missing and reads it (image_data.read).

mnist1d is the one float dataset: its 1-D signals (length 40) are stored as float32 N×1×40, because
they are real-valued and already standardised; quantising them would change the data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch

from scalinglab.core.config import PACKAGED_DATASETS
from scalinglab.core.errors import UserError, one_line
from scalinglab.core.io import atomic_path
from scalinglab.datasets.image_data import DATA_FILE, FORMAT_VERSION, ImageData, read
from scalinglab.datasets.packaged import digits, mnist1d

DOWNLOAD_TIMEOUT_S = 60  # torchvision opens URLs without a timeout; a dead link must not hang a job
# the config key that points a dataset at a folder of its original files (the workflow's datasets.local_dirs)
LOCAL_DIR_HINT = "set datasets.local_dirs.{name} in the config to a folder that holds the original files"


def _hint(name: str) -> str:
    return LOCAL_DIR_HINT.format(name=name)


# md5 of every file we accept, per dataset: the archives torchvision downloads, and the files inside
# them. IDX entries without ".gz" are the decompressed files: repackagers (Debian's
# dataset-fashion-mnist) recompress the .gz, so local IDX files are checked by their content.
# Sources: torchvision 0.29's own tables; decompressed IDX md5s as published by the PyTorch/MNIST
# download scripts and matched here by Debian's Fashion-MNIST files.
CHECKSUMS: dict[str, list[tuple[str, str]]] = {
    "cifar10": [
        ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ("test_batch", "40351d587109b95175f43aff81a1287e"),
        ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    ],
    "cifar100": [
        ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
        ("train", "16019d7e3df5f24257cddd939b257f8d"),
        ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
        ("meta", "7973b15100ade9c7d40fb424638fde48"),
    ],
    "mnist": [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
        ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
        ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
        ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
    ],
    "fashion-mnist": [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        ("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
        ("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
        ("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
    ],
}

# Verified system copies used before any download (same checksums, so the same data).
SYSTEM_DIRS: dict[str, list[str]] = {
    "fashion-mnist": ["/usr/share/datasets/fashion-mnist"],  # Debian: apt-get install dataset-fashion-mnist
}

TORCHVISION_CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
PACKAGED = PACKAGED_DATASETS  # shipped inside a Python package; the config refuses a local_dirs entry
NAMES = (*TORCHVISION_CLASSES, *PACKAGED)
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------- public API


def dataset_path(name: str, root: str | os.PathLike) -> Path:
    return Path(root) / _check_name(name) / DATA_FILE


def prepare(
    name: str, root: str | os.PathLike, local_dir: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Build `<root>/<name>/data.pt` if it does not exist yet; return its path.

    Order of sources: `local_dir` if given, else a known system copy (SYSTEM_DIRS), else a
    torchvision download (if `download`). Every source is md5-verified; on any failure nothing is
    left behind and a one-line UserError says what went wrong.
    """
    name = _check_name(name)
    path = dataset_path(name, root)
    if path.exists():
        return path
    folder = path.parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        arrays, meta = _build(name, folder, local_dir, download)
        _save(path, name, arrays, meta)
    finally:
        if created and folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
    return path


def prepare_file(*, dataset: str, local_dir, download: bool, data) -> Path:
    """The prepare_dataset rule: build the file `data`, `<root>/<dataset>/data.pt`, with `prepare`."""
    data = Path(data)
    path = prepare(dataset, data.parent.parent, local_dir=local_dir, download=download)
    if path.resolve() != data.resolve():
        raise UserError(
            f"{dataset}: the rule asks for {data}, but the dataset's file is {path}; name its folder {dataset}"
        )
    return path


def load(
    name: str, root: str | os.PathLike, local_dir: str | os.PathLike | None = None, download: bool = True
) -> ImageData:
    """Load a prepared dataset (preparing it first if data.pt is missing)."""
    return read(prepare(name, root, local_dir=local_dir, download=download))


# ---------------------------------------------------------------- building


def _build(name: str, folder: Path, local_dir, download: bool) -> tuple[dict, dict]:
    if name in PACKAGED and local_dir is not None:
        raise UserError(f"{name}: ships with its Python package and is never read from a folder; drop local_dir")
    if name == "digits":
        return digits()
    if name == "mnist1d":
        return mnist1d()
    if local_dir is None:
        local_dir = _system_dir(name)
    if local_dir is None and not download:
        raise UserError(f"{name}: not prepared at {folder / DATA_FILE} and downloads are off; {_hint(name)}")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        if local_dir is not None:
            # Verified local files, laid out as torchvision expects; a CIFAR archive is only extracted.
            fetch = _stage_local(name, Path(local_dir), staging)
            source = f"local:{Path(local_dir).resolve()}"
        else:
            fetch, source = True, _source_url(name)
        arrays, classes = _read_torchvision(name, staging, fetch=fetch)
        if name in ("mnist", "fashion-mnist"):
            _verify_idx_content(name, staging)  # torchvision checks the .gz it fetched, not its content
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    meta = {"classes": classes, "source": source, "checksums": {f: m for f, m in CHECKSUMS[name]}}
    return arrays, meta


def _torchvision_class(name: str):
    """torchvision's dataset class with its md5 tables replaced by ours (so tests can patch ours)."""
    import torchvision.datasets as tvd

    base = getattr(tvd, TORCHVISION_CLASSES[name])
    md5 = dict(CHECKSUMS[name])
    if issubclass(base, tvd.CIFAR10):
        attrs = {
            "tgz_md5": md5[base.filename],
            "train_list": [[f, md5[f]] for f, _ in base.train_list],
            "test_list": [[f, md5[f]] for f, _ in base.test_list],
            "meta": {**base.meta, "md5": md5[base.meta["filename"]]},
        }
    else:
        attrs = {"resources": [(f, md5[f]) for f, _ in base.resources]}
    # Same class name: torchvision's MNIST folders are named after the class.
    return type(base.__name__, (base,), attrs)


def _source_url(name: str) -> str:
    cls = _torchvision_class(name)
    if hasattr(cls, "url"):
        return cls.url
    return cls.mirrors[0]


def _read_torchvision(name: str, staging: Path, fetch: bool) -> tuple[dict, list[str]]:
    """Read both splits through torchvision; with `fetch`, let it download and md5-check first."""
    cls = _torchvision_class(name)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        train = cls(str(staging), train=True, download=fetch)  # download() fetches both splits
        test = cls(str(staging), train=False, download=False)
    except Exception as exc:  # torchvision raises URLError, OSError, RuntimeError
        bad = _first_mismatch(name, staging)
        if bad is not None:
            file, got, expected = bad
            raise UserError(
                f"{name}: checksum mismatch for {file} (md5 {got}, expected {expected}): a corrupt or partial "
                f"download or a damaged file; retry, or {_hint(name)}"
            ) from None
        raise UserError(f"{name}: download or read failed ({one_line(exc)}); {_hint(name)}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    arrays = {
        "train_x": _images_nchw(train.data),
        "train_y": torch.as_tensor(np.asarray(train.targets), dtype=torch.int64),
        "test_x": _images_nchw(test.data),
        "test_y": torch.as_tensor(np.asarray(test.targets), dtype=torch.int64),
    }
    return arrays, list(train.classes)


def _images_nchw(data) -> torch.Tensor:
    """torchvision holds CIFAR as numpy N×H×W×C and MNIST as a tensor N×H×W."""
    t = torch.as_tensor(np.asarray(data))
    t = t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)
    return t.to(torch.uint8).contiguous()


# ---------------------------------------------------------------- local directories


def _system_dir(name: str) -> Path | None:
    for candidate in SYSTEM_DIRS.get(name, []):
        folder = Path(candidate)
        if all(_find_idx(folder, f) is not None for f in IDX_FILES):
            return folder
    return None


def _stage_local(name: str, local_dir: Path, staging: Path) -> bool:
    """Verify the files in `local_dir` and lay them out where torchvision expects them.

    Returns True when torchvision must still extract them (a verified CIFAR archive: its download
    step finds the archive in place with the right md5 and only extracts it, no network)."""
    if not local_dir.is_dir():
        raise UserError(f"{name}: local directory {local_dir} does not exist; {_hint(name)}")
    if name in ("cifar10", "cifar100"):
        return _stage_local_cifar(name, local_dir, staging)
    _stage_local_idx(name, local_dir, staging)
    return False


def _stage_local_cifar(name: str, local_dir: Path, staging: Path) -> bool:
    cls = _torchvision_class(name)
    md5 = dict(CHECKSUMS[name])
    archive = local_dir / cls.filename
    if archive.is_file():
        _verify(name, archive, md5[cls.filename])
        os.symlink(archive.resolve(), staging / cls.filename)
        return True
    batches = [f for f in md5 if f != cls.filename]
    target = staging / cls.base_folder
    target.mkdir()
    for file in batches:
        found = next((p for p in (local_dir / file, local_dir / cls.base_folder / file) if p.is_file()), None)
        if found is None:
            raise UserError(
                f"{name}: {local_dir} holds neither {cls.filename} nor the batch file {file} "
                f"(also looked in {cls.base_folder}/); {_hint(name)}"
            )
        _verify(name, found, md5[file])
        os.symlink(found.resolve(), target / file)
    return False


def _stage_local_idx(name: str, local_dir: Path, staging: Path) -> None:
    cls = _torchvision_class(name)
    raw = staging / cls.__name__ / "raw"
    raw.mkdir(parents=True)
    md5 = dict(CHECKSUMS[name])
    for file in IDX_FILES:
        found = _find_idx(local_dir, file)
        if found is None:
            raise UserError(f"{name}: {local_dir} has neither {file} nor {file}.gz; {_hint(name)}")
        content = _read_maybe_gzip(name, found)
        got = hashlib.md5(content, usedforsecurity=False).hexdigest()
        if got != md5[file]:
            raise UserError(
                f"{name}: checksum mismatch for {found} (md5 of its content {got}, expected {md5[file]}); "
                f"the file is corrupt or not the original; {_hint(name)}"
            )
        (raw / file).write_bytes(content)


def _find_idx(folder: Path, file: str) -> Path | None:
    for candidate in (folder / file, folder / f"{file}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_maybe_gzip(name: str, path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise UserError(f"{name}: {path} is not a valid gzip file ({one_line(exc)}); {_hint(name)}") from None


def _verify_idx_content(name: str, staging: Path) -> None:
    raw = staging / TORCHVISION_CLASSES[name] / "raw"
    md5 = dict(CHECKSUMS[name])
    for file in IDX_FILES:
        _verify(name, raw / file, md5[file])


def _verify(name: str, path: Path, expected: str) -> None:
    got = _md5(path)
    if got != expected:
        raise UserError(
            f"{name}: checksum mismatch for {path} (md5 {got}, expected {expected}); "
            f"the file is corrupt or not the original; {_hint(name)}"
        )


def _first_mismatch(name: str, staging: Path) -> tuple[str, str, str] | None:
    """The first staged file whose md5 differs from the table (to tell a bad checksum from no network)."""
    md5 = dict(CHECKSUMS[name])
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.name in md5:
            got = _md5(path)
            if got != md5[path.name]:
                return path.name, got, md5[path.name]
    return None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- saving and helpers


def _save(path: Path, name: str, arrays: dict, meta: dict) -> None:
    mean, std = _channel_stats(arrays["train_x"])
    meta = {
        "format": FORMAT_VERSION,
        "name": name,
        **meta,
        "shape": list(arrays["train_x"].shape[1:]),
        "n_train": len(arrays["train_y"]),
        "n_test": len(arrays["test_y"]),
        "dtype": str(arrays["train_x"].dtype).replace("torch.", ""),
        "mean": mean,
        "std": std,
        "content_md5": _content_md5(arrays),
    }
    with atomic_path(path) as tmp:
        torch.save({**arrays, "meta": meta}, tmp)


def _channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (uint8 in [0, 1] units), accumulated in float64 chunk by chunk."""
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    channels = x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64).transpose(0, 1).reshape(channels, -1) / scale
        total += part.sum(1)
        total_sq += (part * part).sum(1)
    count = x.numel() // channels
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def _content_md5(arrays: dict) -> str:
    """One md5 over the stored tensors: identifies the exact data a result was computed on."""
    digest = hashlib.md5(usedforsecurity=False)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        digest.update(arrays[key].contiguous().numpy().data)
    return digest.hexdigest()


def _check_name(name: str) -> str:
    canonical = name.lower().replace("_", "-")
    canonical = {"cifar-10": "cifar10", "cifar-100": "cifar100", "fashionmnist": "fashion-mnist"}.get(
        canonical, canonical
    )
    if canonical not in NAMES:
        raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(NAMES)}")
    return canonical
