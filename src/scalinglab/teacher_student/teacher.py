"""Sharma & Kaplan's random teacher network, which defines a data manifold of known dimension d.

Teacher layers [d, w, 600, 600, 1], no biases, weights N(0, 1/fan_in), identity at the w-unit layer
and at the output, ReLU at the two 600-unit layers. Latents t ~ N(0, I_d); the inputs x are the
w-unit activations (a linear image of t, so the manifold has dimension min(d, w)) and the targets y
the teacher's output.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from scalinglab.core.errors import UserError, one_line

HIDDEN = 600


@dataclass
class Teacher:
    d: int
    embedding_width: int  # w: the width of the linear embedding x = W t
    weights: list[torch.Tensor]  # (fan_in, fan_out) matrices: embed, hidden1, hidden2, readout

    @classmethod
    def create(cls, d: int, embedding_width: int = 9, seed: int = 0, hidden: int = HIDDEN) -> Teacher:
        if d < 1:
            raise ValueError(f"teacher dimension d must be >= 1, got {d}")
        if d >= embedding_width:
            warnings.warn(
                f"d={d} >= embedding width {embedding_width}: x = W t spans only {min(d, embedding_width)} "
                "dimensions; raise teacher_student.embedding_width to keep the manifold d-dimensional",
                stacklevel=2,
            )
        gen = torch.Generator().manual_seed(seed)
        sizes = [d, embedding_width, hidden, hidden, 1]
        weights = [torch.randn(m, n, generator=gen, dtype=torch.float64) / m**0.5 for m, n in zip(sizes, sizes[1:])]
        return cls(d=d, embedding_width=embedding_width, weights=[w.float() for w in weights])

    @property
    def manifold_dimension(self) -> int:
        """Dimension of the x manifold: d, unless the embedding width is smaller."""
        return min(self.d, self.embedding_width)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map latents t (n, d) to (x (n, w), y (n,))."""
        embed, hidden1, hidden2, readout = (w.to(t.device, t.dtype) for w in self.weights)
        x = t @ embed
        h = torch.relu(x @ hidden1)
        h = torch.relu(h @ hidden2)
        return x, (h @ readout).squeeze(-1)

    def sample(self, n: int, seed: int, chunk: int = 1 << 16, device: str | torch.device = "cpu"):
        """Draw n points (x, y) with latents from a generator seeded by `seed`; chunked to bound memory."""
        gen = torch.Generator().manual_seed(seed)
        xs, ys = [], []
        for start in range(0, n, chunk):
            t = torch.randn(min(chunk, n - start), self.d, generator=gen).to(device)
            x, y = self.forward(t)
            xs.append(x)
            ys.append(y)
        if not xs:
            return torch.empty(0, self.embedding_width, device=device), torch.empty(0, device=device)
        return torch.cat(xs), torch.cat(ys)

    def state_dict(self) -> dict:
        return {"d": self.d, "embedding_width": self.embedding_width, "weights": self.weights}

    @classmethod
    def from_state_dict(cls, state: dict) -> Teacher:
        return cls(d=int(state["d"]), embedding_width=int(state["embedding_width"]), weights=list(state["weights"]))

    @classmethod
    def load(cls, path) -> Teacher:
        """The teacher saved at `path` (make_teacher's output), with a one-line error naming a damaged file."""
        return cls.from_state_dict(load_tensors(path, ("d", "embedding_width", "weights"), "teacher"))


def load_tensors(path, keys: tuple[str, ...], what: str) -> dict:
    """A dict of tensors and plain values saved by torch.save (weights_only: no code runs on load); a
    truncated, foreign or missing file is a one-line UserError that names it."""
    try:
        blob = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what} file; rerun to build it") from None
    except Exception as exc:  # a truncated or foreign file raises many types
        raise UserError(
            f"{path}: cannot read this {what} file ({one_line(exc)}); delete it and rerun to rebuild it"
        ) from None
    missing = [key for key in keys if not isinstance(blob, dict) or key not in blob]
    if missing:
        raise UserError(f"{path}: not a {what} file (no {', '.join(missing)}); delete it and rerun to rebuild it")
    return blob
