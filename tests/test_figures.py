"""Every figure function, called on small frames shaped like the stages' (the columns of a tiny run's
results/tables and results/fits), writes a PNG and its PDF twin and holds what a published figure needs:
plain-number log ticks (never "6×10⁰", never a single labelled tick), every labelled line in a legend,
panels whose labels do not collide, titles naming the model and data, the joint law's y axis on the
data (not on a floor E ~ 1e-31). Checks read the returned (closed) figure's artists, not pixels."""

from __future__ import annotations

import ast
import math
import struct
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from workflow_helpers import REPO

from scalinglab.core.plotting import PlainLogLocator, log_axes, plain_number, plt, save_figure
from scalinglab.deep_nets import figures as deep_figures
from scalinglab.dimension.figures import dimension_vs_k
from scalinglab.images import figures as image_figures
from scalinglab.joint import figures as joint_figures
from scalinglab.laws.implicit_bias import figures as ib_figures
from scalinglab.random_features.figures import bottlenecks
from scalinglab.teacher_student import figures as ts_figures

# ---------------------------------------------------------------- checks


def written(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def visible_labels(axis, minor: bool = False) -> list[str]:
    """The tick labels drawn inside the view (labels hidden on a shared axis left out)."""
    lo, hi = sorted(axis.get_view_interval())
    inside = [t for t in axis.get_ticklabels(minor=minor) if lo <= t.get_position()[axis.axis_name == "y"] <= hi]
    return [t.get_text() for t in inside if t.get_text() and t.get_visible()]


def draw(fig):
    """Lay the (closed) figure out again on an Agg canvas, as save_figure did; its renderer."""
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def log_axes_are_plain(fig) -> None:
    """Every log axis: at least two labels in view, all plain numbers (of the figure as last drawn)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            shared = not any(t.get_visible() for t in axis.get_ticklabels())  # labelled on the next panel
            if axis.get_scale() != "log" or not ax.axison or shared:
                continue
            labels = visible_labels(axis) + visible_labels(axis, minor=True)
            assert len(labels) >= 2, f"{ax.get_title()!r} {axis.axis_name}: labels {labels}"
            for text in labels:
                assert "×" not in text and "^" not in text and "$" not in text, text
                float(text.replace("−", "-"))  # a plain number


def legend_texts(fig) -> set[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return {t.get_text() for legend in legends if legend is not None for t in legend.get_texts()}


def labelled_artists(fig) -> set[str]:
    found = set()
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.containers]:
            label = artist.get_label()
            if label and not label.startswith("_"):
                found.add(label)
    return found


def every_label_in_a_legend(fig) -> None:
    missing = labelled_artists(fig) - legend_texts(fig)
    assert not missing, f"labelled but not in a legend: {missing}"


def panels_do_not_collide(fig, renderer) -> None:
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= 1 or overlap_y <= 1, f"panels overlap: {a} {b}"


def published(fig, path) -> None:
    written(path)
    renderer = draw(fig)
    log_axes_are_plain(fig)
    every_label_in_a_legend(fig)
    panels_do_not_collide(fig, renderer)


def titles(fig) -> str:
    parts = [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]
    return " | ".join([*parts, fig._suptitle.get_text() if fig._suptitle else ""])


# ---------------------------------------------------------------- the style module


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.001, "0.001"),
        (0.05, "0.05"),
        (2, "2"),
        (21.5, "21.5"),
        (1000, "1000"),
        (1e4, "1e4"),
        (2e5, "2e5"),
        (7e-31, "7e-31"),
    ],
)
def test_plain_numbers(value, text):
    assert plain_number(value) == text


@pytest.mark.parametrize("view", [(65, 161), (5, 20), (2e5, 2e6), (0.7, 0.9), (21.5, 25), (1e-4, 4), (1e-31, 10)])
def test_log_ticks_are_plain_and_never_alone(view, tmp_path):
    fig, ax = plt.subplots()
    ax.plot(view, view, label="y = x")
    ax.legend()
    log_axes(ax)
    assert len(PlainLogLocator().tick_values(*view)) >= 3
    published(save_figure(fig, tmp_path / "f.png"), tmp_path / "f.png")


def test_save_figure_writes_png_at_200_dpi_and_a_pdf_twin(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    save_figure(fig, tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    at = data.index(b"pHYs")
    x_per_metre, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    assert unit == 1 and round(x_per_metre * 0.0254) == 200
    written(tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pdf", "x.png"]


def test_every_figure_goes_through_save_figure():
    for path in (REPO / "src" / "scalinglab").rglob("*.py"):
        if path.name == "plotting.py" and path.parent.name == "core":
            continue
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr == "savefig"
        ]
        assert not calls, f"{path} calls savefig: use scalinglab.core.plotting.save_figure"


# ---------------------------------------------------------------- joint law


class Law:
    """A fitted L = E + A N^-alpha + B P^-beta, as JointFit reads in the figures."""

    def __init__(self, E=5e-31, A=20.0, B=40.0, alpha=0.8, beta=0.9):
        self.E, self.A, self.B, self.alpha, self.beta = E, A, B, alpha, beta
        self.method = "vpro"
        self.ci = {"alpha": (0.6, 1.0), "beta": (0.7, 1.1), "E": (0.0, 0.0)}

    def predict(self, N, P):
        return self.E + self.A * np.asarray(N, float) ** -self.alpha + self.B * np.asarray(P, float) ** -self.beta


def joint_cells(law=None) -> pd.DataFrame:
    law = law or Law()
    rng = np.random.default_rng(0)
    rows = [
        {"d": 2, "N": N, "P": P, "seed": s, "C": 6 * N * 5 * P, "test_loss": law.predict(N, P) * rng.lognormal(0, 0.2)}
        for N in (65, 109, 161)
        for P in (100.0, 200.0, 400.0)
        for s in (0, 1)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("sweep", ["loss_vs_n", "loss_vs_p"])
def test_joint_y_axis_stays_on_the_data_when_E_is_zero(sweep, tmp_path):
    cells = joint_cells()
    fig = getattr(joint_figures, sweep)(cells, Law(), tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    lo, hi = fig.axes[0].get_ylim()
    assert lo >= cells["test_loss"].min() / 10 and hi <= cells["test_loss"].max() * 10
    assert any(text.startswith("E ≈ 0") for text in legend_texts(fig))
    assert "MLP student on teacher d = 2" in titles(fig)


@pytest.mark.parametrize(("E", "drawn"), [(0.3, True), (0.05, False)])
def test_joint_floor_is_drawn_when_near_the_data(E, drawn, tmp_path):
    law = Law(E=E)
    fig = joint_figures.loss_vs_n(joint_cells(law), law, tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    floor = [line for line in fig.axes[0].lines if line.get_label().startswith("fitted floor")]
    assert len(floor) == 1 and (len(floor[0].get_xdata()) > 0) == drawn
    assert fig.axes[0].get_ylim()[0] <= E if drawn else fig.axes[0].get_ylim()[0] > E


def test_joint_frontier_and_isoflop(tmp_path):
    cells = joint_cells()
    C = np.geomspace(2e5, 2e6, 6)
    front = [
        {"C": c, "N_opt": 0.1 * c**0.4, "P_opt": 0.02 * c**0.6, "N_opt_lo": 0.07 * c**0.4, "N_opt_hi": 0.14 * c**0.4}
        | {"D_opt_lo": 0.07 * c**0.6, "D_opt_hi": 0.14 * c**0.6}
        for c in C
    ]
    allocation = {"a": {"value": 0.4, "ci": [0.33, 0.59]}, "b": {"value": 0.6, "ci": [None, None]}}
    summary = {
        "passes": 5.0,
        "fits": {"vpro": {"frontier": front, "allocation": allocation}},
        "empirical_frontier": {
            "frontier": [{"C": 3.9e5, "N": 65.0, "D": 1000.0}, {"C": 1.9e6, "N": 161.0, "D": 2000.0}]
        },
    }
    fig = joint_figures.frontier(summary, "vpro", cells, tmp_path / "frontier.png")
    published(fig, tmp_path / "frontier.png")
    assert "95% bootstrap band" in legend_texts(fig)
    fig = joint_figures.isoflop(cells, Law(), 5.0, tmp_path / "isoflop.png", dataset="a teacher")
    published(fig, tmp_path / "isoflop.png")
    assert "MLP student on a teacher" in titles(fig)


# ---------------------------------------------------------------- teacher/student


def ts_frames():
    rng = np.random.default_rng(1)
    widths = {4: 65, 6: 109, 8: 161, 12: 289}
    runs = pd.DataFrame(
        [
            {"d": d, "P": math.inf, "width": w, "N": N, "seed": s, "step": step, "status": "ok"}
            | {"test_loss": 0.5 * N ** (-4 / d) * (1 + 10 / (1 + step)) * rng.lognormal(0, 0.2)}
            for d in (2, 3)
            for w, N in widths.items()
            for s in (0, 1)
            for step in (0, 1, 3, 8, 22, 60)
        ]
    )
    final = runs[runs["step"] == 60]
    fits = pd.DataFrame(
        [
            {"d": d, "P": math.inf, "method": m, "manifold_dim": d, "slope": -4 / d, "intercept": -0.7}
            | {"ci_lo": -4 / d - 0.3, "ci_hi": -4 / d + 0.3, "alpha": 4 / d, "dim": d + 0.2}
            | {"dim_lo": d - 0.5, "dim_hi": d + 1.0 if m == "ols" else math.inf}
            for d in (2, 3)
            for m in ("ols", "quantile")
        ]
    )
    return runs, final, fits


def test_teacher_student_loss_vs_n_draws_theory_lines_in_the_legend(tmp_path):
    _, final, fits = ts_frames()
    fig = ts_figures.loss_vs_n(final, fits, tmp_path / "f.png", theory_dims={2: 2.1, 3: 2.9}, estimator="mle_k20")
    published(fig, tmp_path / "f.png")
    assert sum("theory N^(−4/d̂)" in t and "MLE, k = 20" in t for t in legend_texts(fig)) == 2
    assert len(visible_labels(fig.axes[0].xaxis)) >= 3  # not one x tick
    assert "MLP student" in titles(fig)


def test_teacher_student_dim_vs_d_shows_d_hat_and_fits_the_axes_to_the_data(tmp_path):
    _, _, fits = ts_frames()
    fig = ts_figures.dim_vs_d(fits, tmp_path / "f.png", dim_estimates={2: 2.05, 3: 2.95}, estimator="twonn")
    published(fig, tmp_path / "f.png")
    ax = fig.axes[0]
    assert ax.get_xlim()[0] > 1 and ax.get_ylim()[0] > 0
    assert "d̂ of the data (TwoNN)" in legend_texts(fig)
    assert ts_figures.dim_vs_d(fits, tmp_path / "g.png") is not None  # without estimates too
    written(tmp_path / "g.png")


def test_teacher_student_learning_curves_panels_do_not_collide(tmp_path):
    runs, _, _ = ts_frames()
    fig = ts_figures.learning_curves(runs, tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    assert [ax.get_ylabel() for ax in fig.axes[:2]] == ["test MSE (log)", ""]


# ---------------------------------------------------------------- dimension


def test_dimension_vs_k_labels_k_plainly(tmp_path):
    rows = []
    for name, true in (("teacher d=2", 2), ("digits", pd.NA)):
        base = 2.0 if true is not pd.NA else 8.0
        rows.append({"dataset": name, "manifold_dim": true, "target": "x", "estimator": "twonn", "k": pd.NA})
        rows[-1] |= {"dimension": base, "ci_lo": base - 0.1, "ci_hi": base + 0.1}
        for k in (5, 10, 20):
            rows.append({"dataset": name, "manifold_dim": true, "target": "x", "estimator": "mle", "k": k})
            rows[-1] |= {"dimension": base - k / 50, "ci_lo": base - k / 50 - 0.1, "ci_hi": base - k / 50 + 0.1}
    dims = pd.DataFrame(rows).astype({"manifold_dim": "Int64", "k": "Int64"})
    fig = dimension_vs_k(dims, tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    assert visible_labels(fig.axes[0].xaxis) == ["5", "10", "20"]
    assert {"teacher d=2", "digits", "TwoNN (band: 95% CI)", "true manifold dimension"} <= legend_texts(fig)
    twonn = dims[dims["estimator"] == "twonn"]
    published(dimension_vs_k(twonn, tmp_path / "g.png"), tmp_path / "g.png")


# ---------------------------------------------------------------- images


def image_frames():
    rng = np.random.default_rng(2)
    runs = pd.DataFrame(
        [
            {"dataset": "digits", "width": w, "N": N, "seed": s, "epoch": e}
            | {"train_loss": 2 * N**-0.1 * rng.lognormal(0, 0.05) / e, "val_loss": 2.2 * N**-0.1 / e}
            | {"train_acc": 0.01 * N**0.4 * rng.lognormal(0, 0.05), "val_acc": 0.01 * N**0.35}
            for w, N in ((1, 1294), (2, 1992), (4, 3690))
            for s in (0, 1)
            for e in (1, 2, 3)
        ]
    )
    fits = pd.DataFrame(
        [
            {"dataset": "digits", "P": 1438, "metric": m, "epoch_rule": rule, "quantile": q}
            | {"slope": (0.4 if "acc" in m else -0.1), "intercept": 0.5, "ci_lo": -0.2, "ci_hi": 0.5}
            | {"dim": 40.0 if "loss" in m else 90.0, "dim_lo": 30.0, "dim_hi": 60.0 if "loss" in m else math.inf}
            for m in ("train_loss", "train_acc", "val_loss", "val_acc")
            for rule in ("all", "final")
            for q in (0.2, 0.5, 0.8)
        ]
    )
    return runs, fits


def test_images_scaling_uses_log_axes_and_quotes_4_over_alpha_for_loss_only(tmp_path):
    runs, fits = image_frames()
    fig = image_figures.scaling_grid(runs, fits, tmp_path / "f.png", title="digits: P = 1,438 images")
    published(fig, tmp_path / "f.png")
    for ax, (metric, _) in zip(fig.axes, image_figures.PANELS):
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert ("4/α" in ax.get_title()) == ("loss" in metric), ax.get_title()
    assert "ConvNet on digits" in titles(fig)


@pytest.mark.parametrize("with_estimates", [True, False])
def test_images_dim_vs_dhat_shows_loss_exponents_only(with_estimates, tmp_path):
    _, fits = image_frames()
    columns = ["dataset", "twonn", "mle_k20", "mle_k20_lo", "mle_k20_hi"]
    estimates = pd.DataFrame([["digits", 8.9, 6.8, 6.7, 6.9]] if with_estimates else [], columns=columns)
    fig = image_figures.dim_vs_estimate(fits[fits["quantile"] == 0.5], estimates, 20, tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    texts = legend_texts(fig)
    assert not any("acc" in t for t in texts) and "4/α of the validation loss" in texts
    assert max(ax.get_ylim()[1] for ax in fig.axes) < 80  # the accuracy's 4/α of 90 is not drawn


# ---------------------------------------------------------------- implicit bias and deep nets


def collapse_frame() -> pd.DataFrame:
    u = np.geomspace(1e-4, 4, 15)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "P": P,
                    "u": u,
                    "v": 1 + k * np.clip(-np.log10(u), 0, None) ** 1.5 / 10,
                    "in_fit": (u > 3e-3) & (u < 0.1),
                }
            )
            for k, P in ((1.0, 400.0), (2.0, 800.0))
        ],
        ignore_index=True,
    )


def test_collapse_highlights_the_points_used_and_no_window_without_one(tmp_path):
    fig = ib_figures.collapse(collapse_frame(), None, tmp_path / "f.png", band=(0.2, 0.8), subject="CNN on digits")
    published(fig, tmp_path / "f.png")
    ax = fig.axes[0]
    assert not ax.patches and not [c for c in ax.collections if "window" in str(c.get_label())]
    assert any("error band 0.2–0.8" in t for t in legend_texts(fig))
    assert titles(fig).startswith("CNN on digits")


def test_collapse_draws_a_window_only_inside_the_data(tmp_path):
    fig = ib_figures.collapse(collapse_frame(), (0.01, math.inf), tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    assert any(t.startswith("γ1 window") for t in legend_texts(fig))
    fig = ib_figures.collapse(collapse_frame(), (1e-9, 1e-7), tmp_path / "g.png")
    published(fig, tmp_path / "g.png")
    assert any("outside the data" in t for t in legend_texts(fig))


def test_error_vs_norm_and_learning_curve_name_the_subject(tmp_path):
    lam = np.geomspace(1e-3, 1e3, 12)
    curves = pd.concat(
        [
            pd.DataFrame({"P": P, "lam": lam, "error": 0.5 + (np.log10(lam) - 1) ** 2 / 40 / k, "error_sem": 0.01})
            for k, P in ((1, 400.0), (2, 800.0))
        ],
        ignore_index=True,
    )
    fig = ib_figures.error_vs_norm(curves, tmp_path / "e.png", subject="perceptron, N = 500")
    published(fig, tmp_path / "e.png")
    assert "±1.96 s.e.m. over seeds" in legend_texts(fig)
    P = np.array([400.0, 800.0, 1600.0])
    result = SimpleNamespace(
        learning_curve=pd.DataFrame(
            {"P": P, "eps_opt": P**-0.5, "eps_opt_fit": P**-0.5, "censored": [False, True, False]}
        ),
        gamma_meas=0.5,
        gamma_meas_se=0.05,
        gamma_pred=0.24,
        gamma_pred_se=0.03,
        details={"gamma_meas_ci": [0.4, 0.6]},
    )
    fig = ib_figures.learning_curve(result, tmp_path / "l.png", subject="perceptron, N = 500")
    published(fig, tmp_path / "l.png")
    assert "perceptron, N = 500" in titles(fig)
    assert {"measured: γ = 0.500 [0.400, 0.600]", "predicted: γ1·γ2 = 0.240 ± 0.059"} <= legend_texts(fig)


def test_gamma_figure_labels_every_point(tmp_path):
    nan = math.nan
    table = pd.DataFrame(
        [
            [
                "cnn",
                "digits",
                "test_error",
                0.30,
                0.02,
                0.35,
                0.03,
                0.26,
                0.34,
                0.3,
                0.41,
                nan,
                nan,
                "gamma_meas",
                "ok",
                "",
            ],
            [
                "perceptron",
                "teacher N=100",
                "rel_error",
                0.24,
                0.03,
                0.97,
                0.05,
                0.19,
                0.31,
                0.88,
                1.07,
                0.50,
                0.07,
                "gamma_meas_rel",
                "ok",
                "",
            ],
            [
                "resnet",
                "cifar10",
                "test_error",
                nan,
                nan,
                nan,
                nan,
                nan,
                nan,
                nan,
                nan,
                nan,
                nan,
                "gamma_meas",
                "unresolved",
                "no minimum",
            ],
        ],
        columns="model dataset error gamma_pred gamma_pred_se gamma_meas gamma_meas_se gamma_pred_lo gamma_pred_hi "
        "gamma_meas_lo gamma_meas_hi gamma_meas_rel gamma_meas_rel_se compare_with status message".split(),
    )
    table["talk_gamma_pred"], table["talk_gamma_meas"] = [0.28, nan, nan], [0.33, nan, nan]
    fig = deep_figures.gamma_figure(table, tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    notes = {t.get_text() for t in fig.axes[0].texts}
    assert {"CNN / digits", "perceptron / teacher N=100"} <= notes
    assert any(t.startswith("not measured: ResNet / cifar10") for t in legend_texts(fig))
    lo, hi = fig.axes[0].get_xlim()
    assert lo > 0 and hi < 0.9  # fitted to the points, not a fixed 0 .. 0.8+


def test_deep_net_fallback_figures(tmp_path):
    frame = pd.DataFrame(
        [
            {"P": P, "seed": s, "step": t, "log_norm": math.log(20 + t), "test_error": 0.9 - t / 100 - P / 1000}
            for P in (20, 40)
            for s in (0, 1)
            for t in range(5)
        ]
    )
    fig = deep_figures.raw_curves(frame, "test_error", tmp_path / "r.png", subject="CNN on digits")
    published(fig, tmp_path / "r.png")
    assert "CNN on digits" in titles(fig)
    deep_figures.message_figure("CNN on digits: not measured", tmp_path / "m.png")
    written(tmp_path / "m.png")


# ---------------------------------------------------------------- random features


def test_random_feature_bottlenecks(tmp_path):
    sizes = [16, 32, 64]
    frame = pd.DataFrame(
        [
            {"a": 2.0, "b": 1.5, "sweep": sweep, axis: n, "seed": s, "loss": n**-0.9 * (1 + s / 10)}
            for sweep, axis in (("model", "N"), ("data", "P"))
            for n in sizes
            for s in range(3)
        ]
    )
    fits = pd.DataFrame(
        [
            {"a": 2.0, "b": 1.5, "sweep": sweep, "exponent": 0.9, "exponent_lo": 0.8, "exponent_hi": 1.0}
            | {"theory": 1.0, "bordelon": b}
            for sweep, b in (("model", 1.0), ("data", 3.0))
        ]
    )
    fig = bottlenecks(frame, fits, tmp_path / "f.png")
    published(fig, tmp_path / "f.png")
    assert "min(a−1, 2b) = 3" in legend_texts(fig)
    assert "random-feature model" in titles(fig)
