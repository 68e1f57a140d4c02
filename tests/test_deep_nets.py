"""Deep nets for the implicit-bias laws: the three families, the logged spectral complexity against an
SVD computation, training on digits end to end into implicit_bias.analyse, determinism, the stage."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from scalinglab.datasets import sources
from scalinglab.deep_nets import models as deep_nets_models
from scalinglab.deep_nets import stage as deepnets_stage
from scalinglab.deep_nets import training as deepnets
from scalinglab.deep_nets.spectral import layer_matrices
from scalinglab.laws.implicit_bias.analysis import analyse

SMALL = {"cnn": dict(width=4), "resnet": dict(width=4, depth=1), "vit": dict(width=32, depth=1)}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return sources.load("digits", tmp_path_factory.mktemp("data"))


def svd_log_complexity(matrices) -> float:
    """log R from exact spectral norms (SVD) of the listed matrices, float64."""
    mats = [m.detach().to(torch.float64) for m in matrices]
    sigma = torch.stack([torch.linalg.matrix_norm(m, ord=2) for m in mats])
    norm_21 = torch.stack([m.norm(dim=1).sum() for m in mats])  # l2 norms of the rows of A = columns of A^T
    return float(sigma.log().sum() + 1.5 * ((norm_21 / sigma) ** (2 / 3)).sum().log())


def expected_matrices(net, model):
    """The layers of each family listed by hand (not through spectral.layer_matrices)."""
    if model == "cnn":
        convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
        linears = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
        return [c.weight.reshape(c.weight.shape[0], -1) for c in convs] + [lin.weight for lin in linears]
    if model == "resnet":
        out = [net.stem[0].weight.reshape(net.stem[0].weight.shape[0], -1)]
        for block in net.blocks:
            convs = [block.conv1, block.conv2] + ([block.downsample[0]] if block.downsample is not None else [])
            out += [c.weight.reshape(c.weight.shape[0], -1) for c in convs]
        return out + [net.fc.weight]
    out = [net.patch.weight.reshape(net.patch.weight.shape[0], -1)]
    for block in net.blocks:
        out += list(block.attn.in_proj_weight.chunk(3)) + [
            block.attn.out_proj.weight,
            block.mlp[0].weight,
            block.mlp[2].weight,
        ]
    return out + [net.head.weight]


@pytest.mark.parametrize("model", deep_nets_models.FAMILIES)
@pytest.mark.parametrize(
    "shape,classes", [((1, 28, 28), 10), ((3, 32, 32), 100), ((1, 8, 8), 10)], ids=["mnist", "cifar100", "digits"]
)
def test_each_family_builds_on_any_image_shape(model, shape, classes):
    net = deep_nets_models.build(model, shape, classes, seed=0, **SMALL[model])
    with torch.no_grad():
        out = net(torch.randn(3, *shape))
    assert out.shape == (3, classes) and torch.isfinite(out).all()
    # the selection of spectral.py is exactly the hand list: biases, norms, tokens left out
    got = layer_matrices(net)
    want = expected_matrices(net, model)
    assert len(got) == len(want)
    assert all(torch.equal(g, w.detach()) for (_, g), w in zip(got, want))


def test_families_default_to_the_authors_sizes():
    # CNNClassifier(conv_channels [1, 32, 64, 128], pool_every 2, mlp [512, 10]) on MNIST
    cnn = deep_nets_models.build("cnn", (1, 28, 28), 10)
    assert [m.out_channels for m in cnn.features if isinstance(m, torch.nn.Conv2d)] == [32, 64, 128]
    assert cnn.classifier[1].in_features == 128 * 14 * 14 and cnn.classifier[1].out_features == 512
    resnet = deep_nets_models.build("resnet", (3, 32, 32), 10)  # ResNet-18 layout: 8 BasicBlocks, widths 64...512
    assert len(resnet.blocks) == 8 and resnet.fc.in_features == 512
    vit = deep_nets_models.build(
        "vit", (1, 28, 28), 10
    )  # their MNIST ViT: 7-pixel patches, 128 wide, 4 blocks, 4 heads
    assert vit.patch.kernel_size == (7, 7) and len(vit.blocks) == 4 and vit.blocks[0].attn.num_heads == 4


@pytest.mark.parametrize("model", deep_nets_models.FAMILIES)
def test_logged_spectral_complexity_equals_svd_computation(digits, model):
    direct = {}

    def check(net, row):
        direct[row["step"]] = svd_log_complexity(expected_matrices(net, model))

    frame = deepnets.train_runs(digits, model=model, P=64, seeds=[0], epochs=3, n_logs=4, on_log=check, **SMALL[model])
    assert list(frame["step"]) == [0, 1, 2, 3] and frame["spectral_converged"].all()
    for row in frame.itertuples():
        # warm-started power iteration at every log point against an SVD at that point
        assert row.log_norm == pytest.approx(direct[row.step], abs=1e-4)
    assert frame["log_norm"].iloc[-1] != frame["log_norm"].iloc[0]  # the weights moved between log points


def test_log_steps_start_at_the_initial_network():
    steps = deepnets.log_steps(400, 20)
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 400
    assert steps == sorted(set(steps)) and len(steps) <= 20
    gaps = np.diff(np.log(steps[1:]))
    assert gaps.max() < 3 * gaps[gaps > 0].min() + 0.2  # roughly even in log step


@pytest.fixture(scope="module")
def sweep(digits):
    """CNN on digits over a small P sweep: long enough that every P interpolates and the test loss rises."""
    frames = [
        deepnets.train_runs(digits, model="cnn", P=P, seeds=[0, 1], epochs=120, width=4, n_logs=25)
        for P in (32, 64, 128, 256)
    ]
    return pd.concat(frames, ignore_index=True)


def test_sweep_rows_are_tidy_and_real(sweep):
    assert set(deepnets.COLUMNS) == set(sweep.columns) and (sweep["status"] == "ok").all()
    for (_, _), run in sweep.groupby(["P", "seed"]):
        assert run["step"].iloc[0] == 0 and run["step"].is_monotonic_increasing
        assert run["test_error"].iloc[0] > 0.75  # an untrained net guesses (10 classes)
        assert run["train_error"].iloc[-1] <= 0.02  # ... and every P is fitted by the end
        # the norm grows along training (Adam on cross-entropy, no weight decay)
        assert run["log_norm"].iloc[-1] > run["log_norm"].iloc[0] + 1.0
        assert np.corrcoef(run["step"], run["log_norm"])[0, 1] > 0.8
    final = sweep[sweep["step"] == sweep.groupby("P")["step"].transform("max")].groupby("P")["test_error"].mean()
    assert final.is_monotonic_decreasing and final.iloc[0] - final.iloc[-1] > 0.1  # more data, fewer errors


def test_sweep_feeds_the_implicit_bias_analysis(sweep):
    # the test loss has its minimum inside the range of norms at every P (it rises once the training
    # set is fitted), so all of the laws are measurable on this small budget
    result = analyse(sweep, norm="log_norm", error="test_loss", norm_is_log=True, window=(0.1, 0.5))
    assert result.edge_minima == []
    lam = [result.lambda_opt[p] for p in sorted(result.lambda_opt)]
    assert lam[-1] > lam[0]  # the optimal norm grows with P
    assert result.gamma_meas > 0.1 and result.gamma2 > 0
    assert result.gamma_pred == pytest.approx(result.gamma1 * result.gamma2)


def test_fixed_seeds_reproduce_and_seeds_differ(digits):
    runs = [deepnets.train_runs(digits, model="cnn", P=40, seeds=[3, 4], epochs=4, width=2, n_logs=5) for _ in range(2)]
    cols = ["step", "log_norm", "test_error", "test_loss", "train_loss"]
    pd.testing.assert_frame_equal(runs[0][cols], runs[1][cols])
    a, b = (runs[0][runs[0]["seed"] == s]["test_loss"].to_numpy() for s in (3, 4))
    assert not np.allclose(a, b)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("model", ["cnn", "resnet"])  # resnet: BatchNorm's running statistics must resume too
def test_interrupted_runs_resume_from_their_checkpoint_with_identical_numbers(digits, tmp_path, model):
    """Stopped at seed 4's first log point after epoch 3 (a checkpoint is saved after every epoch) and
    rerun, the call returns an uninterrupted call's frame bit for bit, warm-started power iterations
    included; seed 3 and seed 4's first epochs are not redone."""
    args = dict(model=model, P=40, seeds=[3, 4], epochs=6, width=2, n_logs=8, batch=8)
    expected = deepnets.train_runs(digits, **args).drop(columns="seconds")
    ckpt = tmp_path / "deep.pt"

    def stop_late_in_seed_4(row):
        if row["seed"] == 4 and row["epoch"] > 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        deepnets.train_runs(digits, **args, progress=stop_late_in_seed_4, checkpoint=ckpt, checkpoint_every_s=0)
    assert ckpt.exists()
    redone = []
    frame = deepnets.train_runs(digits, **args, progress=redone.append, checkpoint=ckpt, checkpoint_every_s=0)
    pd.testing.assert_frame_equal(frame.drop(columns="seconds"), expected, check_exact=True)
    assert {row["seed"] for row in redone} == {4} and min(row["epoch"] for row in redone) > 3
    assert ckpt.exists()  # its caller removes it once the result is stored (deepnets_stage.train_cell does)


@pytest.mark.parametrize("model", ["cnn", "vit"])
def test_optimisers_have_no_weight_decay(digits, monkeypatch, model):
    """As the authors trained: Adam (CNN, ResNet) and AdamW (ViT) with weight decay 0; AdamW's own
    default (0.01) would shrink the norm that the whole analysis measures."""
    made = []
    real = deepnets.OPTIMIZER[model]

    def recording(params, **kwargs):
        made.append(real(params, **kwargs))
        return made[-1]

    monkeypatch.setitem(deepnets.OPTIMIZER, model, recording)
    deepnets.train_runs(digits, model=model, P=16, seeds=[0], epochs=1, width=4, depth=1, n_logs=2, batch=8)
    assert len(made) == 1 and all(group["weight_decay"] == 0 for group in made[0].param_groups)


def test_divergence_is_marked(digits):
    frame = deepnets.train_runs(digits, model="cnn", P=64, seeds=[0], epochs=6, width=2, n_logs=6, lr=1e12)
    assert (frame["status"] == "diverged").all()
    assert frame["step"].max() < 6  # training stopped at the first non-finite loss


def test_bad_input_is_one_line(digits):
    from scalinglab.core.errors import UserError

    with pytest.raises(UserError, match="unknown model family"):
        deep_nets_models.build("mlp", (1, 8, 8), 10)
    with pytest.raises(UserError, match="P = 5000"):
        deepnets.train_runs(digits, model="cnn", P=5000, seeds=[0], epochs=1)


def test_stage_writes_cells_fits_and_the_gamma_table(digits, tmp_path, sweep):
    data_path = sources.dataset_path("digits", tmp_path / "data")
    sources.prepare("digits", tmp_path / "data")
    settings = {"epochs": 2, "batch": 128, "lr": 1e-3, "width": 2, "depth": None, "n_logs": 3, "test_size": 100}
    cells = [tmp_path / f"seed~{s}.parquet" for s in (0, 1)]
    checkpoint = tmp_path / "cell.pt"  # saved after every epoch, removed once the cells are written
    deepnets_stage.train_cell(
        data=data_path,
        cells=cells,
        dataset="digits",
        model="cnn",
        P=30,
        seeds=[0, 1],
        **settings,
        device="cpu",
        threads=1,
        checkpoint=checkpoint,
        checkpoint_every_s=0,
    )
    assert all(p.exists() for p in cells) and not checkpoint.exists()
    cell = pd.read_parquet(cells[1])
    assert set(cell["seed"]) == {1} and list(cell["step"]) == [0, 1, 2]
    # the analysis of the sweep above, through the stage: measured laws, then the talk-style table
    sweep.to_parquet(tmp_path / "sweep.parquet")
    figures = {k: tmp_path / f"{k}.png" for k in ("curves", "collapse", "learning")}
    summary = deepnets_stage.analyse_pair(
        runs=[tmp_path / "sweep.parquet"],
        model="cnn",
        dataset="digits",
        window=[0.1, 0.5],
        upper_fraction=0.5,
        error="test_loss",
        fits_json=tmp_path / "fit.json",
        **figures,
    )
    assert summary["status"] == "ok" and all(p.exists() for p in figures.values())
    # a run too short to reach any minimum: reported as unresolved, not a crash
    short = deepnets_stage.analyse_pair(
        runs=cells,
        model="cnn",
        dataset="digits",
        window=[0.02, 0.2],
        upper_fraction=0.5,
        error="test_error",
        fits_json=tmp_path / "bad.json",
        **figures,
    )
    assert short["status"] == "unresolved" and math.isnan(short["gamma_pred"]) and "need" in short["message"]
    perceptron = tmp_path / "perceptron.json"
    perceptron.write_text(json.dumps({"N": 500, **{k: 0.5 for k in deepnets_stage.GAMMA_KEYS}}))
    table = deepnets_stage.gamma_table(
        fits=[tmp_path / "fit.json", tmp_path / "bad.json"],
        perceptron=perceptron,
        fits_table=tmp_path / "t.parquet",
        fits_json=tmp_path / "t.json",
        caption=tmp_path / "t.rst",
        figure=tmp_path / "t.png",
    )
    assert list(table["model"]) == ["cnn", "cnn", "perceptron"]
    caption = (tmp_path / "t.rst").read_text()
    assert f"{summary['gamma_meas']:.3f} ± {summary['gamma_meas_se']:.3f}" in caption
    assert "not measured" in caption and (tmp_path / "t.png").exists()
