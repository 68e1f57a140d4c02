"""Matplotlib for every figure: the non-interactive Agg backend, chosen here once, and atomic PNG writes.

Figure modules import `plt` from here, so the backend is set before pyplot is first imported.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scalinglab.core.io import atomic_path  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig, path) -> None:
    """Write `fig` as a PNG atomically (a crash never leaves a partial file) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
