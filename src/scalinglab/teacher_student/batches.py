"""Training batches for the students' engine: each member's batches from its bundle's pool of
teacher points, drawn many steps at a time (training.py steps through them)."""

from __future__ import annotations

import torch


class BatchSource:
    """Per-member training batches from a shared pool of points (no per-step work that grows with E).

    mode "sample": each member draws its own batch uniformly with replacement (a fixed training set of P).
    mode "stream": each member walks the pool from its own random offset, so no point repeats for a
    member until it has seen the whole pool (fresh samples every step, P = inf, while steps x batch
    <= pool size). A longer run passes over the pool again, each pass in a new seeded order: a member
    then sees every point once per pass, never the same batches twice (the first pass reads the pool
    in its stored order, which is already random).

    `chunk(n, batch)` gives n steps' batches at once, (n, E, batch, w): the same points as n calls of
    `next`, drawn with a handful of tensor operations instead of a handful per step.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, E: int, mode: str, seed: int):
        self.x, self.y, self.E, self.mode, self.seed = x, y, E, mode, int(seed)
        self.gen = torch.Generator(device=x.device).manual_seed(seed)
        self.position = 0
        size = x.shape[0]
        self.offsets = torch.randint(size, (E, 1), generator=self.gen, device=x.device)
        self._orders: dict[int, torch.Tensor] = {}
        # each point's x and y side by side: a batch row is then one read, not two (a run of 12,800
        # points gathered in 40% of the time)
        self.points = torch.cat([x.reshape(size, -1), y.reshape(size, -1)], 1) if mode == "stream" else None

    def order(self, k: int) -> torch.Tensor:
        """The pool's order on pass k (k >= 1), derived from the seed and k alone (a resumed run
        rebuilds it); the two passes a chunk can straddle are kept."""
        if k not in self._orders:
            gen = torch.Generator(device="cpu").manual_seed((self.seed + k * 0x9E3779B97F4A7C15) % 2**63)
            self._orders = {j: o for j, o in self._orders.items() if j >= k - 1}
            self._orders[k] = torch.randperm(self.x.shape[0], generator=gen).to(self.x.device)
        return self._orders[k]

    def chunk(self, n: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n steps' batches: x (n, E, batch, w), y (n, E, batch)."""
        size, device = self.x.shape[0], self.x.device
        if self.mode != "stream":
            rows = torch.randint(size, (n, self.E, batch), generator=self.gen, device=device).view(-1)
            x, y = self.x.index_select(0, rows), self.y.index_select(0, rows)
            return x.view(n, self.E, batch, *self.x.shape[1:]), y.view(n, self.E, batch)
        length = n * batch
        points = self.points.new_empty(self.E, length, self.points.shape[1])
        # a member reads runs of consecutive points of a pass's order: the stored order on the first
        # pass, read as slices (25x faster than gathering the same rows by index), and on a later
        # pass k the points that order(k) lists at those positions
        for e, start in enumerate(((self.offsets[:, 0] + self.position) % size).tolist()):
            for lo, hi, k, first in self._runs(start, length):
                if k == 0:
                    points[e, lo:hi] = self.points[first : first + hi - lo]
                else:
                    torch.index_select(self.points, 0, self.order(k)[first : first + hi - lo], out=points[e, lo:hi])
        self.position += length
        points = points.view(self.E, n, batch, -1).transpose(0, 1)
        return self._split(points[..., : self.x[0].numel()], self.x), self._split(
            points[..., self.x[0].numel() :], self.y
        )

    @staticmethod
    def _split(columns: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Joined columns (..., k) back in the shape of one point of `like` (a view, no copy)."""
        return columns.unflatten(-1, like.shape[1:]) if like.dim() > 1 else columns[..., 0]

    def _runs(self, start: int, length: int):
        """A member's next `length` points, starting at position `start` of the current pass's
        order, as runs (lo, hi, k, first): its points lo..hi-1 are positions first.. of pass k's
        order. A run ends where the pass ends or where the member's walk wraps around the pool."""
        size, j = self.x.shape[0], 0
        while j < length:
            k, first = (self.position + j) // size, (start + j) % size
            hi = min(length, (k + 1) * size - self.position, j + size - first)
            yield j, hi, k, first
            j = hi

    def next(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's batches: x (E, batch, w), y (E, batch)."""
        x, y = self.chunk(1, batch)
        return x[0], y[0]


class Sources:
    """The batches of a packed ensemble: consecutive members belong to bundles (a teacher dimension,
    say) that each stream their own data with their own BatchSource, exactly as if trained alone."""

    def __init__(self, sources: list[BatchSource]):
        self.sources = sources

    def chunk(self, n: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n steps' batches of every member: x (n, E, batch, w), y (n, E, batch)."""
        if len(self.sources) == 1:  # contiguous, as the steps' batches are when several are joined
            x, y = self.sources[0].chunk(n, batch)
            return x.contiguous(), y.contiguous()
        parts = [source.chunk(n, batch) for source in self.sources]
        return torch.cat([x for x, _ in parts], 1), torch.cat([y for _, y in parts], 1)

    def next(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.chunk(1, batch)
        return x[0], y[0]

    def state(self) -> dict:
        return {
            "generator": [s.gen.get_state() for s in self.sources],
            "position": [s.position for s in self.sources],
            "offsets": [s.offsets.cpu() for s in self.sources],
        }

    def load(self, state: dict) -> None:
        saved = zip(self.sources, state["generator"], state["position"], state["offsets"])
        for source, gen, position, offsets in saved:
            source.gen.set_state(gen)
            source.position, source.offsets = position, offsets.to(source.x.device)


def chunk_steps(E: int, batch: int, w: int, budget: int = 4_000_000) -> int:
    """Steps per chunk of batches: a power of two up to 64 (it divides CHECK_EVERY_STEPS) whose
    points, E x batch x w floats per step, stay within `budget` values."""
    n = 64
    while n > 1 and n * E * batch * (w + 1) > budget:
        n //= 2
    return n
