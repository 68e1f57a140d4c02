"""The joint-law stage on a synthetic cell table of known parameters: fits, outputs, C = 6 N D."""

import json

import numpy as np
import pandas as pd
import pytest

from scalinglab.joint.stage import add_compute, fit_and_plot

TRUE = {"E": 0.02, "A": 3.0, "B": 8.0, "alpha": 0.6, "beta": 0.45}
PASSES = 20


def synthetic_table(noise=0.01, seeds=(0, 1, 2, 3)) -> pd.DataFrame:
    """Cells of a widths x P grid, two logged steps each, final loss from the known law x log-normal noise."""
    rng = np.random.default_rng(0)
    rows = []
    for N in (161, 341, 577, 1101, 2881, 6000):
        for P in (250, 500, 1000, 2000, 4000, 8000):
            for seed in seeds:
                final = (TRUE["E"] + TRUE["A"] * N ** -TRUE["alpha"] + TRUE["B"] * P ** -TRUE["beta"]) * np.exp(
                    noise * rng.standard_normal()
                )
                for step, frac, loss in ((1, 0.5, 10 * final), (2, 1.0, final)):
                    rows.append(
                        {
                            "N": N,
                            "P": float(P),
                            "seed": seed,
                            "step": step,
                            "samples": int(frac * PASSES * P),
                            "test_loss": loss,
                            "status": "ok",
                        }
                    )
    return add_compute(pd.DataFrame(rows))


def test_compute_is_six_n_times_samples_seen():
    table = synthetic_table()
    assert np.allclose(table["C"], 6.0 * table["N"] * table["samples"])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("joint")
    table_path = out / "table.parquet"
    synthetic_table().to_parquet(table_path)
    figures = {name: out / f"{name}.png" for name in ("loss_vs_n", "loss_vs_p", "frontier", "isoflop")}
    summary = fit_and_plot(
        table=table_path,
        methods=["vpro", "chinchilla"],
        bootstrap=40,
        fits_table=out / "fits.parquet",
        fits_json=out / "fits.json",
        caption=out / "caption.rst",
        **figures,
    )
    return out, summary, figures


@pytest.mark.parametrize("method", ["vpro", "chinchilla"])
def test_recovers_the_known_law(outputs, method):
    _, summary, _ = outputs
    fit = summary["fits"][method]
    # 36 configurations x 4 seeds, 1% log-normal noise: exponents within 0.05, E within 0.01, A and B within 25%
    assert fit["alpha"]["value"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit["beta"]["value"] == pytest.approx(TRUE["beta"], abs=0.05)
    assert fit["E"]["value"] == pytest.approx(TRUE["E"], abs=0.01)
    for name in ("A", "B"):
        assert fit[name]["value"] == pytest.approx(TRUE[name], rel=0.25)
    assert fit["alpha"]["ci"][0] <= fit["alpha"]["value"] <= fit["alpha"]["ci"][1]
    assert all(v is not None and v < 0.05 for v in fit["extrapolation_error"].values())
    a = fit["allocation"]["a"]["value"]
    assert a == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]), abs=0.05)


def test_writes_every_output(outputs):
    out, summary, figures = outputs
    fits = pd.read_parquet(out / "fits.parquet")
    assert sorted(fits["method"]) == ["chinchilla", "vpro"]
    assert json.loads((out / "fits.json").read_text())["passes"] == pytest.approx(PASSES)
    frontier = pd.DataFrame(summary["fits"]["vpro"]["frontier"])
    assert np.allclose(frontier["P_opt"] * PASSES, frontier["D_opt"])
    assert np.allclose(6 * frontier["N_opt"] * frontier["D_opt"], frontier["C"], rtol=1e-9)
    for path in figures.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    caption = (out / "caption.rst").read_text()
    assert f"{summary['fits']['vpro']['alpha']['value']:.4g}" in caption
