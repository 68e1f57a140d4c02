"""The image stage: fits recover a known slope with both epoch rules, captions and figures carry the
numbers, the CIFAR-10 path end to end on a fabricated archive, image datasets in the dimension
stage, and the Liu preset's dry run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from test_datasets import fake_network, tiny_cifar  # noqa: F401  (fixtures)
from workflow_helpers import REPO, planned_jobs

from scalinglab.core.errors import UserError
from scalinglab.datasets import sources
from scalinglab.dimension import stage as dimension_stage
from scalinglab.dimension.figures import dimension_vs_k
from scalinglab.dimension.table import reference_estimates
from scalinglab.images import stage as images_stage
from scalinglab.images.convnet import param_count
from scalinglab.images.fits import estimated_dims, fit_images

LOSS_SLOPE, ACC_SLOPE = -0.4, 0.05
SIZES = np.geomspace(1e3, 1e5, 8).round()
SEEDS, EPOCHS = range(6), range(1, 6)


def synthetic_table(noise: float = 0.05) -> pd.DataFrame:
    """Runs whose every epoch follows metric = A N^slope g(epoch) e^noise: the epoch factor does
    not depend on N, so both epoch rules should find the same slope."""
    rng = np.random.default_rng(0)
    rows = []
    for width, n in enumerate(SIZES, start=1):
        for seed in SEEDS:
            for epoch in EPOCHS:
                early = 1 + 2.0 / epoch  # higher losses and lower accuracies early on, at every N
                rows.append(
                    dict(
                        dataset="synth",
                        train_size="all",
                        width=width,
                        N=int(n),
                        P=1000,
                        seed=seed,
                        epoch=epoch,
                        status="ok",
                        train_loss=3 * n**LOSS_SLOPE * early * np.exp(rng.normal(0, noise)),
                        val_loss=4 * n**LOSS_SLOPE * early * np.exp(rng.normal(0, noise)),
                        train_acc=0.5 * n**ACC_SLOPE / early**0.1 * np.exp(rng.normal(0, noise / 5)),
                        val_acc=0.45 * n**ACC_SLOPE / early**0.1 * np.exp(rng.normal(0, noise / 5)),
                    )
                )
    return pd.DataFrame(rows)


def test_both_epoch_rules_recover_a_known_slope():
    fits = fit_images(synthetic_table(), quantiles=[0.2, 0.5, 0.8], bootstrap=100)
    assert len(fits) == 4 * 2 * 3  # metrics x epoch rules x quantiles
    assert set(fits["epoch_rule"]) == {"all", "final"}
    for row in fits.itertuples():
        truth = LOSS_SLOPE if row.kind == "loss" else ACC_SLOPE
        tolerance = 0.03 if row.kind == "loss" else 0.01  # noise sd 0.05 (0.01 for accuracy), 6 seeds x 8 sizes
        assert row.slope == pytest.approx(truth, abs=tolerance), row
        assert row.dim == pytest.approx(4 / abs(row.slope))
        assert row.ci_lo < row.slope < row.ci_hi
    final = fits[fits["epoch_rule"] == "final"]
    assert (final["n_points"] == len(SIZES) * len(SEEDS)).all()  # one point per run
    assert (fits[fits["epoch_rule"] == "all"]["n_points"] == len(SIZES) * len(SEEDS) * len(EPOCHS)).all()
    assert (fits["n_clusters"] == len(SIZES) * len(SEEDS)).all()  # the bootstrap resamples each width's seeds


def test_diverged_runs_are_left_out_and_named():
    table = synthetic_table()
    bad = (table["width"] == 3) & (table["seed"] == 1)
    table.loc[bad, "status"] = "diverged"
    table.loc[bad, ["train_loss", "val_loss", "train_acc", "val_acc"]] = np.nan
    fits = fit_images(table, quantiles=[0.5], bootstrap=0)
    assert (fits[fits["epoch_rule"] == "final"]["n_points"] == len(SIZES) * len(SEEDS) - 1).all()
    assert fits["diagnostics"].str.contains("excluded 1 diverged run").all()


def test_augmentation_settings():
    assert images_stage.augmentation("cifar10", "auto") == "flip_crop"
    assert images_stage.augmentation("digits", "auto") == "crop"  # a mirrored digit is another symbol
    assert images_stage.augmentation("digits", "none") == "none"
    assert images_stage.augmentation("mnist", "auto") == "crop"
    with pytest.raises(UserError, match="images.augment"):
        images_stage.augmentation("mnist1d", "auto")


def test_fit_writes_table_json_caption_and_figures(tmp_path):
    table_path = tmp_path / "images.parquet"
    synthetic_table().to_parquet(table_path)
    out = {name: tmp_path / name for name in ("fits.parquet", "fits.json", "caption.rst")}
    fits = images_stage.fit_and_write(
        table=table_path,
        dimension=None,
        quantiles=[0.2, 0.5, 0.8],
        bootstrap=20,
        reference_k=20,
        fits_table=out["fits.parquet"],
        fits_json=out["fits.json"],
        caption=out["caption.rst"],
    )
    assert len(json.loads(out["fits.json"].read_text())) == len(fits)
    text = out["caption.rst"].read_text()
    row = fits[(fits.metric == "val_loss") & (fits.epoch_rule == "final") & (fits["quantile"] == 0.5)].iloc[0]
    assert f"{row['dim']:.1f} [{row['dim_lo']:.3g}, {row['dim_hi']:.3g}]" in text
    images_stage.plot_scaling(
        table=table_path, fits=out["fits.parquet"], dataset="synth", P="all", figure=tmp_path / "grid.png"
    )
    images_stage.plot_dims(fits=out["fits.parquet"], dimension=None, reference_k=20, figure=tmp_path / "dims.png")
    for name in ("grid.png", "dims.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cifar10_end_to_end_on_a_fabricated_archive(tmp_path, tiny_cifar, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", tiny_cifar["table"])
    root = tmp_path / "resources" / "datasets"
    data_path = sources.prepare("cifar10", root, local_dir=tiny_cifar["archive"].parent, download=False)
    cells = {}
    for width in (1, 2):
        paths = [tmp_path / f"c{width}_s{seed}.parquet" for seed in (0, 1)]
        checkpoint = tmp_path / f"c{width}.pt"  # saved after every epoch, removed once the cells are written
        images_stage.train_bundle(
            data=data_path,
            cells=paths,
            dataset="cifar10",
            P=60,
            width=width,
            seeds=[0, 1],
            epochs=2,
            batch=32,
            lr=5e-4,
            weight_decay=0.01,
            augment="auto",
            device="cpu",
            threads=1,
            checkpoint=checkpoint,
            checkpoint_every_s=0,
        )
        assert all(p.exists() for p in paths) and not checkpoint.exists()
        cells.update({(width, seed): pd.read_parquet(p) for seed, p in zip((0, 1), paths)})
    for (width, seed), cell in cells.items():
        assert list(cell["epoch"]) == [1, 2] and (cell["seed"] == seed).all() and (cell["P"] == 60).all()
        assert (cell["N"] == param_count(width)).all() and (cell["augment"] == "flip_crop").all()
    assert cells[(1, 0)]["N"].iloc[0] == 5408  # Liu's smallest CIFAR-10 model
    table = pd.concat(cells.values(), ignore_index=True)
    fits = fit_images(table, quantiles=[0.5], bootstrap=10)
    assert len(fits) == 4 * 2 and (fits["dataset"] == "cifar10").all()
    assert fits["diagnostics"].str.contains("only 2 distinct N").all()  # it says 2 sizes are too few
    assert np.isfinite(fits["slope"]).all()


def test_image_datasets_in_the_dimension_stage(tmp_path):
    data_path = sources.prepare("digits", tmp_path / "datasets")
    frame = dimension_stage.estimate_images(
        data=data_path,
        dataset="digits",
        estimators=["twonn", "mle"],
        ks=[10, 20],
        subsample=None,
        bootstrap=20,
        seed=0,
        mle_unbiased=False,
        estimates=tmp_path / "digits.parquet",
    )
    assert frame["d"].isna().all() and frame["manifold_dim"].isna().all()
    assert (frame["n_points"] <= 1797).all() and (frame["n_points"] > 1700).all()  # 8x8 digits, duplicates dropped
    mle = frame[(frame["estimator"] == "mle") & (frame["k"] == 20)]["dimension"].iloc[0]
    assert 5 < mle < 20  # 64 pixels, but far fewer directions of variation
    # beside a teacher manifold: the teacher's reference row is unaffected, the image's is found
    teacher = frame.assign(dataset="teacher d=4", d=4, embedding_width=9, manifold_dim=4)
    both = pd.concat([teacher, frame], ignore_index=True)
    assert reference_estimates(both, 20)["d"].tolist() == [4]
    est = estimated_dims(both, 20)
    assert est["dataset"].tolist() == ["digits"] and est["mle_k20"].iloc[0] == pytest.approx(mle)
    dimension_vs_k(both, tmp_path / "dims.png")
    assert (tmp_path / "dims.png").exists()


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["cifar10_liu", "fashion_mnist_liu"])
def test_the_liu_presets_plan_every_width(tmp_path, name):
    preset = yaml.safe_load((REPO / "config" / "presets" / f"{name}.yaml").read_text())
    jobs = planned_jobs(tmp_path, preset)
    trained = sorted(int(wc["width"]) for rule, wc in jobs if rule == "train_images")
    assert trained == list(range(1, 21))
    rules = {rule for rule, _ in jobs}
    assert {"prepare_dataset", "dimension_images", "fit_images", "plot_images", "plot_images_dims"} <= rules
    assert "train_teacher_student" not in rules and "perceptron_sweep" not in rules
