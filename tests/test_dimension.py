"""Intrinsic dimension: exact k-NN, TwoNN and MLE on manifolds of known dimension, skdim agreement, CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from scalinglab.cli.main import main
from scalinglab.dimension.estimators import MLE, TwoNN, estimate
from scalinglab.dimension.knn import knn_distances
from scalinglab.teacher_student.teacher import Teacher


def brute_force_knn(X: np.ndarray, k: int) -> np.ndarray:
    """Sorted float64 distances to the k nearest other points, from direct differences."""
    X = np.asarray(X, dtype=np.float64)
    d2 = np.concatenate(
        [((rows[:, None, :] - X[None, :, :]) ** 2).sum(-1) for rows in np.array_split(X, len(X) // 50 + 1)]
    )
    np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.sort(d2, axis=1)[:, :k])


def teacher_points(d: int, width: int, n: int = 20_000, seed: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Teacher warns when d >= width: that case is tested on purpose
        return Teacher.create(d, embedding_width=width, seed=seed).sample(n, seed=seed + 1)[0].numpy()


# ------------------------------------------------------------------ exact k-NN


@pytest.mark.parametrize("chunk", [None, 64, 250])
def test_knn_distances_equal_brute_force(chunk):
    rng = np.random.default_rng(0)
    # Points on a curved 3-d surface in 12 dimensions, 1,000 of them: several tiles when chunk is small.
    t = rng.normal(size=(1000, 3))
    X = np.tanh(t @ rng.normal(size=(3, 12))) + 0.1 * np.sin(t @ rng.normal(size=(3, 12)))
    got = knn_distances(X, 15, chunk=chunk)
    assert got.shape == (1000, 15)
    # float32 storage: about 1e-7 relative; rows left unrefined are within 5e-5 by construction.
    np.testing.assert_allclose(got, brute_force_knn(X, 15), rtol=5e-5)


def test_knn_distances_exact_for_tiny_distances_far_from_the_mean():
    """Two clusters 2,000 apart with spread 0.01: float32 |x|^2 + |y|^2 - 2 x.y is useless there
    (rounding ~1e-4 of |x|^2 ~ 1e6), so the float64 fallback and the direct differences must act."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(400, 5)) * 0.01 + 1000.0, rng.normal(size=(400, 5)) * 0.01 - 1000.0])
    for dtype in (np.float64, np.float32):
        points = X.astype(dtype)
        got = knn_distances(points, 10, chunk=128)
        np.testing.assert_allclose(got, brute_force_knn(points, 10), rtol=1e-6)


def test_knn_distances_on_high_dimensional_points():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 4)) @ rng.normal(size=(4, 500)) + rng.normal(size=(600, 500)) * 0.01
    np.testing.assert_allclose(
        knn_distances(X.astype(np.float32), 20, chunk=200), brute_force_knn(X.astype(np.float32), 20), rtol=5e-5
    )


# ------------------------------------------------------------------ pruned k-NN (same result, fewer pairs)


def fourier_manifold(n: int, latent: int, dim: int, seed: int, lengthscale: float = 2.0) -> np.ndarray:
    """Points on a smooth latent-dimensional manifold in dim coordinates (random Fourier features,
    as in benchmarks/dimension.py): full rank, but with a decaying spectrum, so the bound prunes."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, latent))
    w = rng.normal(size=(latent, dim)) / lengthscale
    return (np.sqrt(2 / dim) * np.cos(z @ w + rng.uniform(0, 2 * np.pi, dim))).astype(np.float32)


def test_pruned_knn_equals_brute_force_on_a_manifold():
    X = fourier_manifold(1_500, 8, 160, seed=12, lengthscale=3.0)
    info = {}
    got = knn_distances(X, 20, chunk=96, method="pruned", info=info)  # several tiles and row blocks
    assert info["method"] == "pruned"
    # The bound leaves under a fifth of the pairs, yet some rows need the second pass.
    assert info["pair_fraction"] < 0.2 and info["open_rows"] > 0
    np.testing.assert_allclose(got, brute_force_knn(X, 20), rtol=5e-5)
    np.testing.assert_allclose(got, knn_distances(X, 20, method="full"), rtol=5e-5)


def test_pruned_knn_on_isotropic_gaussian_is_exact_and_auto_does_not_prune(monkeypatch):
    """A flat spectrum: the bound rules out almost nothing. Forced pruning must still be exact (its
    rows fall back to full rows of matmul); "auto" must see from its sample that pruning does not pay."""
    import scalinglab.dimension.pruning as pruning

    monkeypatch.setattr(pruning, "PRUNE_MIN_POINTS", 0)
    monkeypatch.setattr(pruning, "PRUNE_DIMS", 16)
    X = np.random.default_rng(13).normal(size=(1_200, 128)).astype(np.float32)
    info = {}
    np.testing.assert_allclose(knn_distances(X, 10, method="pruned", info=info), brute_force_knn(X, 10), rtol=5e-5)
    assert info["method"] == "pruned" and info["open_rows"] > 1_000
    info = {}
    np.testing.assert_allclose(knn_distances(X, 10, info=info), brute_force_knn(X, 10), rtol=5e-5)
    assert info["method"] == "full" and info["predicted_cost_ratio"] > 0.5 and info["pair_fraction"] == 1.0
    # A manifold is pruned, once gathered pairs are made as cheap as a matmul's (on 1,200 points the
    # real GATHER_COST rightly keeps the full pass; the benchmark's 50,000 points are pruned).
    monkeypatch.setattr(pruning, "GATHER_COST", 1)
    M = fourier_manifold(1_200, 3, 128, seed=14)
    info = {}
    np.testing.assert_allclose(knn_distances(M, 10, info=info), brute_force_knn(M, 10), rtol=5e-5)
    assert info["method"] == "pruned" and info["pair_fraction"] < 0.2


def test_pruned_knn_with_ties_duplicates_and_points_far_from_the_mean():
    # Ties: a 3-d integer lattice rotated into 40 dimensions (many neighbours at exactly equal
    # distances), with repeated points, which are dropped first.
    rng = np.random.default_rng(15)
    grid = np.stack(np.meshgrid(*[np.arange(10.0)] * 3), -1).reshape(-1, 3)
    rotation = np.linalg.qr(rng.normal(size=(40, 40)))[0][:3]
    X = np.concatenate([grid @ rotation, (grid @ rotation)[:7]])
    with pytest.warns(UserWarning, match="dropped 7 duplicate"):
        got = knn_distances(X, 12, method="pruned", chunk=128)
    np.testing.assert_allclose(got, brute_force_knn(grid @ rotation, 12), rtol=5e-5)
    # Tiny distances far from the mean: float32 rounding is large there, so the bound's margins and
    # the float64 repair must both act (as in the full pass).
    far = fourier_manifold(600, 3, 40, seed=16).astype(np.float64) * 0.01
    far = np.concatenate([far + 1000.0, far - 1000.0])
    np.testing.assert_allclose(knn_distances(far, 10, method="pruned", chunk=128), brute_force_knn(far, 10), rtol=1e-6)


def test_knn_method_is_checked_and_info_filled():
    X = np.random.default_rng(17).normal(size=(300, 3))
    with pytest.raises(ValueError, match="method must be one of"):
        knn_distances(X, 5, method="fast")
    info = {}
    knn_distances(X, 5, info=info)  # "auto" does not prune small inputs
    assert info["method"] == "full" and info["exact_pairs"] == info["all_pairs"] == 300 * 299 // 2


def test_duplicates_are_dropped_with_a_warning():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 4))
    X_dup = np.concatenate([X, X[[3, 3, 10, 99]]])
    X_dup[7] = X_dup[8]  # one more repeat inside
    with pytest.warns(UserWarning, match=r"dropped 5 duplicate point\(s\) of 504.*499 distinct"):
        dist = knn_distances(X_dup, 5)
    assert dist.shape == (499, 5)
    assert (dist[:, 0] > 0).all()
    with pytest.warns(UserWarning, match="dropped 5 duplicate"):
        assert TwoNN(bootstrap=0).fit(X_dup).n_points_ == 499


def test_negative_zero_equals_zero_for_duplicates():
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [2.0, 0.5], [1.0, 3.0]], dtype=np.float32)
    with pytest.warns(UserWarning, match=r"dropped 1 duplicate"):
        assert knn_distances(X, 2).shape == (3, 2)


def test_no_warning_without_duplicates():
    X = np.random.default_rng(4).normal(size=(300, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        knn_distances(X, 5)


def test_bad_points_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        knn_distances(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="too few"):
        knn_distances(np.random.default_rng(0).normal(size=(10, 2)), 10)
    with pytest.raises(ValueError, match="2-D"):
        knn_distances(np.zeros((3, 3, 3)), 1)


# ------------------------------------------------------------------ the estimators' formulas


def uniform_ball_distances(n: int, k: int, d: int, seed: int = 0) -> np.ndarray:
    """Neighbour distances around n points of a d-dimensional Poisson process: given T_k = 1, the
    k - 1 closer neighbours are uniform in the unit d-ball, so their radii are u^(1/d)."""
    rng = np.random.default_rng(seed)
    radii = np.sort(rng.random((n, k - 1)) ** (1 / d), axis=1)
    return np.concatenate([radii, np.ones((n, 1))], axis=1)


def test_mle_with_mackay_ghahramani_averaging_converges_to_d():
    # sum_{j<k} log(T_k/T_j) ~ Gamma(k-1, rate d): divided by k-1 its mean is exactly 1/d, so
    # averaging the inverses and inverting gives d; Levina-Bickel's k-2 (unbiased=True) gives
    # d (k-2)/(k-1). Relative SE here ~0.2%; allow 1%.
    k, d = 20, 5
    dist = uniform_ball_distances(20_000, k, d)
    mle = MLE(k=k, bootstrap=0).fit_distances(dist)
    assert mle.dimension_ == pytest.approx(d, rel=0.01)
    assert mle.n_points_ == 20_000
    levina_bickel = MLE(k=k, bootstrap=0, unbiased=True).fit_distances(dist)
    assert levina_bickel.dimension_ == pytest.approx(d * (k - 2) / (k - 1), rel=0.01)


def test_mle_uses_the_first_k_columns():
    dist = uniform_ball_distances(2_000, 30, 4, seed=5)
    direct = MLE(k=10, bootstrap=0).fit_distances(dist[:, :10]).dimension_
    assert MLE(k=10, bootstrap=0).fit_distances(dist).dimension_ == direct


def test_twonn_recovers_the_pareto_shape():
    # mu = r2 / r1 is Pareto(d) on a d-dimensional Poisson process: P(mu > m) = m^-d.
    d = 7
    mu = np.random.default_rng(6).random(50_000) ** (-1 / d)
    dist = np.stack([np.ones_like(mu), mu], axis=1)
    assert TwoNN(bootstrap=0).fit_distances(dist).dimension_ == pytest.approx(d, rel=0.02)


def test_bootstrap_ci_brackets_and_covers():
    # TwoNN on 40 independent Pareto(4) samples of 400 ratios: a 95% interval should cover 4 in
    # about 38 of 40; a CI that is 2x too narrow would cover ~28. Require at least 33.
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(40):
        mu = rng.random(400) ** (-1 / 4)
        fit = TwoNN(bootstrap=200, seed=int(rng.integers(1 << 30))).fit_distances(np.stack([np.ones(400), mu], 1))
        assert fit.ci_[0] < fit.dimension_ < fit.ci_[1]
        covered += fit.ci_[0] <= 4 <= fit.ci_[1]
    assert covered >= 33


def test_mle_bootstrap_ci_matches_the_delta_method():
    # dimension = 1 / mean(inverse): half-width ~ 1.96 dimension^2 sd(inverse) / sqrt(n).
    dist = uniform_ball_distances(5_000, 20, 6, seed=8)
    mle = MLE(k=20, bootstrap=400, seed=1).fit_distances(dist)
    half = 1.96 * mle.dimension_**2 * mle.inverse_local_.std() / np.sqrt(len(dist))
    assert (mle.ci_[1] - mle.ci_[0]) / 2 == pytest.approx(half, rel=0.15)
    again = MLE(k=20, bootstrap=400, seed=1).fit_distances(dist)
    assert again.ci_ == mle.ci_
    assert np.isnan(MLE(k=20, bootstrap=0).fit_distances(dist).ci_).all()


def test_fit_distances_rejects_zero_or_unsorted_distances():
    with pytest.raises(ValueError, match="duplicate"):
        TwoNN().fit_distances(np.array([[0.0, 1.0], [1.0, 2.0], [1.0, 3.0]]))
    with pytest.raises(ValueError, match="sorted"):
        MLE(k=3).fit_distances(np.array([[1.0, 3.0, 2.0]] * 5))
    with pytest.raises(ValueError, match="k >= 3"):
        MLE(k=2).fit_distances(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"\(n, >=20\)"):
        MLE(k=20).fit_distances(np.ones((5, 10)))
    with pytest.raises(ValueError, match=r"discard_fraction must be in \(0, 1\)"):  # 0 gives log(0)
        TwoNN(discard_fraction=0.0).fit_distances(np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]]))


# ------------------------------------------------------------------ manifolds of known dimension

# (d, width, true dimension min(d, width), TwoNN tolerance, MLE(k=20) tolerance): the tolerance bands,
# 15% (25% at d = 12 in width 16). MLE reads low at high d, as it is known to.
MANIFOLDS = [
    (2, 9, 2, 0.15, 0.15),
    (4, 9, 4, 0.15, 0.15),
    (6, 9, 6, 0.15, 0.15),
    (8, 9, 8, 0.15, 0.15),
    (12, 16, 12, 0.25, 0.25),
    (12, 9, 9, 0.15, 0.15),  # d >= width: the points span the width, not d
]


@pytest.mark.parametrize(("d", "width", "true", "tol_twonn", "tol_mle"), MANIFOLDS)
def test_teacher_manifold_dimension(d, width, true, tol_twonn, tol_mle):
    dist = knn_distances(teacher_points(d, width), 20)  # one pass serves both estimators
    twonn = TwoNN(bootstrap=0).fit_distances(dist).dimension_
    mle = MLE(k=20, bootstrap=0).fit_distances(dist).dimension_
    assert twonn == pytest.approx(true, rel=tol_twonn)
    assert mle == pytest.approx(true, rel=tol_mle)
    if d >= width:
        assert max(twonn, mle) < true + 1  # reads the width (9), far from d (12)


# ------------------------------------------------------------------ agreement with scikit-dimension


@pytest.mark.parametrize("points", ["teacher", "curved"])
def test_agreement_with_skdim(points):
    skdim = pytest.importorskip("skdim")
    if points == "teacher":
        X = teacher_points(6, 9, n=2_000).astype(np.float64)
    else:  # 40 dimensions: skdim's TwoNN takes its other (full distance matrix) path above 25
        rng = np.random.default_rng(9)
        X = np.tanh(rng.normal(size=(2_000, 5)) @ rng.normal(size=(5, 40)))
    dist = knn_distances(X, 20)
    ours_twonn = TwoNN(discard_fraction=0.1, bootstrap=0).fit_distances(dist).dimension_
    sk_twonn = skdim.id.TwoNN(discard_fraction=0.1).fit(X).dimension_
    assert ours_twonn == pytest.approx(sk_twonn, rel=1e-4)
    # skdim's unbiased flag picks k-2 over k-1 as ours does; comb="mle" averages inverses, then inverts.
    # The spec asks 2%; the formulas are the same on exact neighbours, so they agree far closer.
    for unbiased in (False, True):
        ours_mle = MLE(k=20, bootstrap=0, unbiased=unbiased).fit_distances(dist).dimension_
        sk_mle = skdim.id.MLE(unbiased=unbiased).fit(X, n_neighbors=20, comb="mle").dimension_
        assert ours_mle == pytest.approx(sk_mle, rel=1e-4)


# ------------------------------------------------------------------ estimate()


def test_estimate_sweeps_k_from_one_pass():
    X = teacher_points(4, 9, n=3_000)
    frame = estimate(X, ks=(20, 5, 10), bootstrap=50, seed=3)
    assert list(frame.columns) == ["estimator", "k", "dimension", "ci_lo", "ci_hi", "n_points"]
    assert list(frame.estimator) == ["twonn", "mle", "mle", "mle"]
    assert frame.k.isna().tolist() == [True, False, False, False]
    assert frame.k.iloc[1:].tolist() == [5, 10, 20]
    dist = knn_distances(X, 20)
    assert frame.dimension.iloc[0] == pytest.approx(TwoNN(bootstrap=0).fit_distances(dist).dimension_, rel=1e-12)
    assert frame.dimension.iloc[3] == pytest.approx(MLE(k=20, bootstrap=0).fit_distances(dist).dimension_, rel=1e-12)
    assert (frame.ci_lo < frame.dimension).all() and (frame.dimension < frame.ci_hi).all()
    assert (frame.n_points == 3_000).all()


def test_estimate_subsample_and_single_estimator():
    X = teacher_points(3, 9, n=3_000)
    frame = estimate(X, estimators="twonn", subsample=1_000, bootstrap=0)
    assert frame.estimator.tolist() == ["twonn"] and frame.n_points.tolist() == [1_000]
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate(X, estimators=("pca",))
    # duplicates go before the subsample is drawn: 400 distinct points are asked for and used
    doubled = np.concatenate([X[:500], X[:500]])
    with pytest.warns(UserWarning, match="dropped 500 duplicate"):
        frame = estimate(doubled, estimators="twonn", subsample=400, bootstrap=0)
    assert frame.n_points.tolist() == [400]


def test_accepts_torch_tensors():
    x = torch.from_numpy(np.random.default_rng(10).normal(size=(400, 3)).astype(np.float32))
    assert TwoNN(bootstrap=0).fit(x).dimension_ == pytest.approx(
        TwoNN(bootstrap=0).fit(x.numpy()).dimension_, rel=1e-12
    )


# ------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def points_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("points")
    X = teacher_points(3, 9, n=1_500)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(9)]).assign(label="a")
    frame.to_csv(folder / "points.csv", index=False)
    frame.to_parquet(folder / "points.parquet")
    np.save(folder / "points.npy", X)
    return folder, X


def test_cli_json_keys_and_values(points_files, capsys):
    folder, X = points_files
    assert main(["dimension", str(folder / "points.npy"), "--k", "10", "20", "--json", "--bootstrap", "50"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [list(r) for r in records] == [["estimator", "k", "dimension", "ci", "n_points"]] * 3
    assert [(r["estimator"], r["k"]) for r in records] == [("twonn", None), ("mle", 10), ("mle", 20)]
    expected = estimate(X, ks=(10, 20), bootstrap=50)
    for record, row in zip(records, expected.itertuples()):
        assert record["dimension"] == pytest.approx(row.dimension, rel=1e-12)
        assert record["ci"] == pytest.approx([row.ci_lo, row.ci_hi], rel=1e-12)
        assert record["n_points"] == 1_500


def test_cli_tables_columns_and_estimator(points_files, capsys):
    folder, X = points_files
    for name in ("points.csv", "points.parquet"):
        assert (
            main(
                [
                    "dimension",
                    str(folder / name),
                    "--columns",
                    "x0",
                    "x1",
                    "x2",
                    "x3",
                    "--estimator",
                    "mle",
                    "--k",
                    "10",
                    "--json",
                    "--bootstrap",
                    "0",
                ]
            )
            == 0
        )
        (record,) = json.loads(capsys.readouterr().out)
        assert record["estimator"] == "mle" and record["ci"] == [None, None]
        expected = MLE(k=10, bootstrap=0).fit(X[:, :4].astype(np.float64)).dimension_
        assert record["dimension"] == pytest.approx(expected, rel=1e-6)
    # Without --columns every numeric column is used (the text column "label" is skipped).
    assert main(["dimension", str(folder / "points.csv"), "--estimator", "twonn", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["estimator", "k", "dimension"]
    assert f"{TwoNN(bootstrap=0).fit(X.astype(np.float64)).dimension_:.2f}" in out


def test_cli_warns_about_duplicates(tmp_path, capsys):
    X = np.random.default_rng(11).normal(size=(300, 3))
    np.save(tmp_path / "dup.npy", np.concatenate([X, X[:4]]))
    assert main(["dimension", str(tmp_path / "dup.npy"), "--estimator", "twonn", "--json", "--bootstrap", "0"]) == 0
    captured = capsys.readouterr()
    assert "dropped 4 duplicate point(s)" in captured.err
    assert json.loads(captured.out)[0]["n_points"] == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "no such file"),
        (["missing.npy"], "no such file"),
        (["points.csv", "--columns", "x0", "nope"], "missing column(s) nope"),
        (["points.csv", "--columns", "label"], "not numeric"),
        (["points.npy", "--columns", "x0"], "a .npy array is used whole"),
        (["points.npy", "--k", "2"], "at least 3 neighbours"),
        (["points.npy", "--subsample", "10", "--k", "20"], "too few for k=20"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(points_files, capsys, args, message):
    folder, _ = points_files
    args = [str(folder / args[0]), *args[1:]]
    assert main(["dimension", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
