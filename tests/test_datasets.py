"""Datasets: conversion through torchvision's real download/verify code on fabricated archives,
local directories, Debian's Fashion-MNIST files, packaged datasets, subsets and normalisation."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.utils as tv_utils

from scalinglab.core.errors import UserError
from scalinglab.datasets import image_data, sources

PER_BATCH = 20
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def no_leftovers(root: Path, name: str) -> bool:
    return not (root / name).exists()


@pytest.fixture
def tiny_cifar(tmp_path):
    """A CIFAR-10 archive in the real cifar-10-batches-py pickle format, 20 images per batch."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    rows = {}
    for i, file in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(PER_BATCH) + i) % 10]
        entry = {
            "batch_label": file,
            "labels": labels,
            "data": data,
            "filenames": [f"{file}_{j}.png" for j in range(PER_BATCH)],
        }
        (src / file).write_bytes(pickle.dumps(entry, protocol=2))
        rows[file] = (data, labels)
    meta = {"num_cases_per_batch": PER_BATCH, "label_names": CIFAR_NAMES, "num_vis": 3072}
    (src / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    archive = tmp_path / "archive" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    table = [(archive.name, md5(archive))] + [(p.name, md5(p)) for p in sorted(src.iterdir())]
    return {"archive": archive, "batches": src, "table": table, "rows": rows}


@pytest.fixture
def fake_network(monkeypatch):
    """Route torchvision's download_url to local files: only the transfer is faked, its md5 checks run."""
    served: dict[str, Path] = {}
    fetched: list[str] = []

    def urlretrieve(url, filename, chunk_size=None):
        fetched.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in served:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        shutil.copyfile(served[name], filename)

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", urlretrieve)
    monkeypatch.setattr(tv_utils, "_is_remote_location_available", lambda: False)
    return served, fetched


def test_cifar_download_converts_once_and_loads(tmp_path, tiny_cifar, fake_network, monkeypatch):
    served, fetched = fake_network
    served[tiny_cifar["archive"].name] = tiny_cifar["archive"]
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", tiny_cifar["table"])
    root = tmp_path / "resources" / "datasets"

    data = sources.load("cifar10", root)

    assert fetched == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert sorted(p.name for p in (root / "cifar10").iterdir()) == ["data.pt"]  # staging cleaned
    assert data.train_x.shape == (5 * PER_BATCH, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (PER_BATCH, 3, 32, 32) and data.train_y.dtype == torch.int64
    # CIFAR rows are channel-major 3×32×32: the stored CHW image must be the row reshaped.
    batch3, labels3 = tiny_cifar["rows"]["data_batch_3"]
    assert torch.equal(data.train_x[2 * PER_BATCH + 7], torch.from_numpy(batch3[7].reshape(3, 32, 32)))
    assert data.train_y[2 * PER_BATCH : 3 * PER_BATCH].tolist() == labels3
    test_rows, test_labels = tiny_cifar["rows"]["test_batch"]
    assert torch.equal(data.test_x, torch.from_numpy(test_rows.reshape(-1, 3, 32, 32)))
    assert data.test_y.tolist() == test_labels
    assert data.classes == CIFAR_NAMES and data.n_classes == 10 and data.shape == (3, 32, 32)
    assert data.meta["source"].endswith("cifar-10-python.tar.gz")
    # stored statistics are the training set's per-channel mean/std in [0, 1] units
    expected_mean = data.train_x.double().div(255).mean(dim=(0, 2, 3))
    assert torch.allclose(data.mean.flatten().double(), expected_mean, atol=1e-6)

    # a second load reads data.pt and never touches the network
    again = sources.load("cifar10", root)
    assert fetched == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert again.meta["content_md5"] == data.meta["content_md5"]


def test_cifar_archive_checksum_mismatch_leaves_nothing(tmp_path, tiny_cifar, fake_network, monkeypatch):
    served, _ = fake_network
    served[tiny_cifar["archive"].name] = tiny_cifar["archive"]
    table = [("cifar-10-python.tar.gz", "0" * 32)] + tiny_cifar["table"][1:]
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", table)
    root = tmp_path / "datasets"

    with pytest.raises(UserError) as err:
        sources.load("cifar10", root)

    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cifar10: checksum mismatch for cifar-10-python.tar.gz")
    assert "expected " + "0" * 32 in message and "local_dir" in message
    assert no_leftovers(root, "cifar10")


def test_cifar_batch_checksum_mismatch_names_the_batch(tmp_path, tiny_cifar, fake_network, monkeypatch):
    served, _ = fake_network
    served[tiny_cifar["archive"].name] = tiny_cifar["archive"]
    table = [(f, "f" * 32 if f == "data_batch_2" else m) for f, m in tiny_cifar["table"]]
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", table)

    with pytest.raises(UserError, match=r"^cifar10: checksum mismatch for data_batch_2 "):
        sources.load("cifar10", tmp_path)
    assert no_leftovers(tmp_path, "cifar10")


def test_unreachable_download_is_one_line_error(tmp_path, tiny_cifar, fake_network, monkeypatch):
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", tiny_cifar["table"])  # nothing served

    with pytest.raises(UserError) as err:
        sources.load("cifar10", tmp_path)

    message = str(err.value)
    assert "\n" not in message and message.startswith("cifar10: download or read failed")
    assert "Name or service not known" in message and "local_dir" in message
    assert no_leftovers(tmp_path, "cifar10")


def test_cifar_from_local_archive_or_batches_matches_download(tmp_path, tiny_cifar, fake_network, monkeypatch):
    served, fetched = fake_network
    served[tiny_cifar["archive"].name] = tiny_cifar["archive"]
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", tiny_cifar["table"])
    downloaded = sources.load("cifar10", tmp_path / "a")
    served.clear()

    from_archive = sources.load("cifar10", tmp_path / "b", local_dir=tiny_cifar["archive"].parent)
    from_batches = sources.load("cifar10", tmp_path / "c", local_dir=tiny_cifar["batches"].parent)

    assert len(fetched) == 1  # only the first load went to the "network"
    assert from_archive.meta["content_md5"] == downloaded.meta["content_md5"]
    assert from_batches.meta["content_md5"] == downloaded.meta["content_md5"]
    assert from_archive.meta["source"].startswith("local:")
    assert tiny_cifar["archive"].exists()  # the user's files are left alone


def test_local_cifar_with_damaged_batch_is_refused(tmp_path, tiny_cifar, monkeypatch):
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", tiny_cifar["table"])
    batch = tiny_cifar["batches"] / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-1] + b"x")

    with pytest.raises(UserError, match=r"^cifar10: checksum mismatch for .*test_batch \(md5 [0-9a-f]{32}, expected"):
        sources.load("cifar10", tmp_path / "root", local_dir=tiny_cifar["batches"].parent)
    assert no_leftovers(tmp_path / "root", "cifar10")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> bytes:
    """IDX format: 0x0000, type 0x08 (uint8), number of dims, big-endian sizes, then the data."""
    raw = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return raw


@pytest.fixture
def tiny_mnist(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "idx"
    folder.mkdir()
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(30) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(10).astype(np.uint8),
    }
    table = []
    for i, (file, array) in enumerate(arrays.items()):
        gz = i % 2 == 0  # a mix of gzipped and plain files, as users have them
        raw = write_idx(folder / (file + ".gz" if gz else file), array, compress=gz)
        table.append((file, hashlib.md5(raw).hexdigest()))
    return folder, arrays, table


def test_idx_from_local_dir_and_mismatch(tmp_path, tiny_mnist, monkeypatch):
    folder, arrays, table = tiny_mnist
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", table + [(f + ".gz", "0" * 32) for f, _ in table])

    data = sources.load("mnist", tmp_path / "ok", local_dir=folder)

    assert data.train_x.shape == (30, 1, 28, 28) and data.test_x.shape == (10, 1, 28, 28)
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert data.test_y.tolist() == list(range(10))

    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x0a" + bytes(range(9, -1, -1)))
    with pytest.raises(UserError, match=r"^mnist: checksum mismatch for .*t10k-labels-idx1-ubyte \(md5 of its content"):
        sources.load("mnist", tmp_path / "bad", local_dir=folder)
    assert no_leftovers(tmp_path / "bad", "mnist")


def test_mnist_download_verifies_archives_and_content(tmp_path, tiny_mnist, fake_network, monkeypatch):
    folder, arrays, table = tiny_mnist
    served, fetched = fake_network
    gz_table = []
    for file in arrays:
        gz = tmp_path / "served" / f"{file}.gz"
        gz.parent.mkdir(exist_ok=True)
        write_idx(gz, arrays[file], compress=True)
        served[gz.name] = gz
        gz_table.append((gz.name, md5(gz)))
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", gz_table + table)

    data = sources.load("mnist", tmp_path / "root")

    assert len(fetched) == 4 and all(url.startswith("https://ossci-datasets") for url in fetched)
    assert torch.equal(data.test_x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == ["data.pt"]


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason="Debian package dataset-fashion-mnist not installed "
    "(apt-get install dataset-fashion-mnist puts the IDX .gz files in /usr/share/datasets/fashion-mnist)",
)
def test_fashion_mnist_from_debian_package(tmp_path):
    data = sources.load("fashion-mnist", tmp_path)  # found through SYSTEM_DIRS, no download

    assert data.meta["source"] == f"local:{FASHION_DIR}"
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_y.bincount().tolist() == [6000] * 10 and data.test_y.bincount().tolist() == [1000] * 10
    assert data.train_y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    # the usual normalisation constants of Fashion-MNIST: mean 0.2860, std 0.3530
    assert data.meta["mean"][0] == pytest.approx(0.2860, abs=1e-4)
    assert data.meta["std"][0] == pytest.approx(0.3530, abs=1e-4)


def test_digits_conversion_and_split(tmp_path):
    from sklearn.datasets import load_digits

    data = sources.load("digits", tmp_path)
    images = load_digits().images

    assert data.train_x.dtype == torch.uint8 and data.shape == (1, 8, 8)
    assert data.n_train + len(data.test_y) == 1797
    assert int(data.train_x.max()) == 255 and int(data.train_x.min()) == 0
    # every stored image is one of sklearn's, scaled 0..16 → 0..255, each used exactly once
    scaled = torch.as_tensor(np.rint(images * 255 / 16), dtype=torch.uint8)
    stored = torch.cat([data.train_x, data.test_x])[:, 0]
    key = lambda t: sorted(map(bytes, t.reshape(len(t), -1).numpy()))  # noqa: E731
    assert key(stored) == key(scaled)
    # stratified 80/20: every class has 20% of its images in the test set, to within one
    totals = torch.cat([data.train_y, data.test_y]).bincount()
    assert torch.all((data.test_y.bincount() - 0.2 * totals).abs() <= 1)


def test_subset_is_stratified_nested_and_seeded():
    labels = torch.repeat_interleave(torch.arange(12), torch.arange(1, 13) ** 2)  # 650 examples, classes of 1..144
    counts = labels.bincount().double()
    for seed in range(3):
        previous = set()
        for size in range(5, 650, 15):
            idx = image_data.subset_indices(labels, size, seed=seed)
            assert len(idx) == size and len(set(idx.tolist())) == size
            share = labels[idx].bincount(minlength=12).double()
            assert torch.all((share - size * counts / counts.sum()).abs() < 1.0)  # proportional to within one
            assert previous <= set(idx.tolist())  # nested: a larger subset contains the smaller
            previous = set(idx.tolist())
    first = image_data.subset_indices(labels, 100, seed=3)
    assert torch.equal(first, image_data.subset_indices(labels, 100, seed=3))
    assert not torch.equal(first, image_data.subset_indices(labels, 100, seed=4))
    with pytest.raises(UserError, match="outside 1..650"):
        image_data.subset_indices(labels, 651, seed=0)


def test_subset_keeps_test_set_and_statistics(tmp_path):
    data = sources.load("digits", tmp_path)
    part = image_data.subset(data, 50, seed=0)
    assert part.n_train == 50 and torch.equal(part.test_x, data.test_x)
    assert torch.equal(part.mean, data.mean) and part.meta["subset_size"] == 50
    idx = image_data.subset_indices(data.train_y, 50, seed=0)
    assert torch.equal(part.train_x, data.train_x[idx])


def test_to_float_normalises_uint8_and_passes_floats():
    x = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    out = image_data.to_float(x, [0.5, 0.2], [0.25, 0.1], device="cpu")
    expected = torch.tensor([[[[-2.0, 2.0]], [[0.0, 2.0]]]])
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-6)
    signal = torch.tensor([[[1.0, 3.0]]])  # mnist1d-like (N, 1, L) float: no /255
    mean1d, std1d = torch.tensor([[1.0]]), torch.tensor([[2.0]])
    assert torch.allclose(image_data.to_float(signal, mean1d, std1d), torch.tensor([[[0.0, 1.0]]]))


def test_mnist1d_missing_package_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "mnist1d", None)  # makes `import mnist1d` fail
    with pytest.raises(UserError, match=r"^mnist1d: the mnist1d package is not installed; run `pip install mnist1d`"):
        sources.load("mnist1d", tmp_path)
    assert no_leftovers(tmp_path, "mnist1d")


def test_mnist1d_generated_as_float32(tmp_path):
    pytest.importorskip("mnist1d", reason="optional package mnist1d not installed")
    state = np.random.get_state()[1].copy()
    data = sources.load("mnist1d", tmp_path)
    assert np.array_equal(np.random.get_state()[1], state)  # the caller's numpy RNG is untouched
    assert data.train_x.dtype == torch.float32 and data.train_x.shape == (4000, 1, 40)
    assert data.test_x.shape == (1000, 1, 40) and data.n_classes == 10
    assert abs(data.meta["mean"][0]) < 0.05 and data.meta["std"][0] == pytest.approx(1.0, abs=0.05)


def test_bad_names_and_damaged_files(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'svhn'; choose one of cifar10, cifar100"):
        sources.load("svhn", tmp_path)
    assert sources.dataset_path("CIFAR-10", tmp_path) == tmp_path / "cifar10" / "data.pt"
    path = sources.dataset_path("digits", tmp_path)
    path.parent.mkdir()
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=r"cannot read it .*delete it and rerun to rebuild it$"):
        sources.load("digits", tmp_path)
    with pytest.raises(UserError, match="local directory .* does not exist"):
        sources.load("cifar100", tmp_path, local_dir=tmp_path / "nowhere")
    with pytest.raises(UserError, match="downloads are off"):
        sources.load("cifar100", tmp_path, download=False)
    with pytest.raises(UserError, match=r"cifar100/data.pt: no prepared dataset there; run the prepare_dataset rule"):
        image_data.read(sources.dataset_path("cifar100", tmp_path))
    with pytest.raises(UserError, match=r"cannot read it .*delete it and rerun to rebuild it$"):
        image_data.read(path)
