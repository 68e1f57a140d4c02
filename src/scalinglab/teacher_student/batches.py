"""Training batches for the students' engine: each member's batches from its bundle's pool of
teacher points, drawn many steps at a time (training.py steps through them)."""

from __future__ import annotations

import torch

# a pass's reordered copy of the pool is kept when the pool is at most this big: its batches are then
# read in order; a larger pool is read through the order (random reads: slower, same numbers)
MATERIALISE_BYTES = 256 * 2**20


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
        self._pass: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (k, x, y) reordered for pass k
        self._materialise = (x.element_size() * x.numel() + y.element_size() * y.numel()) <= MATERIALISE_BYTES

    def order(self, k: int) -> torch.Tensor:
        """The pool's order on pass k (k >= 1), derived from the seed and k alone (a resumed run
        rebuilds it); the two passes a chunk can straddle are kept."""
        if k not in self._orders:
            gen = torch.Generator(device="cpu").manual_seed((self.seed + k * 0x9E3779B97F4A7C15) % 2**63)
            self._orders = {j: o for j, o in self._orders.items() if j >= k - 1}
            self._orders[k] = torch.randperm(self.x.shape[0], generator=gen).to(self.x.device)
        return self._orders[k]

    def _read(self, k: int, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the pool in pass k's order."""
        if k == 0:
            return self.x[rows], self.y[rows]
        if not self._materialise:
            picked = self.order(k)[rows]
            return self.x[picked], self.y[picked]
        if self._pass is None or self._pass[0] != k:
            order = self.order(k)
            self._pass = (k, self.x[order], self.y[order])
        return self._pass[1][rows], self._pass[2][rows]

    def chunk(self, n: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n steps' batches: x (n, E, batch, w), y (n, E, batch)."""
        size, device = self.x.shape[0], self.x.device
        if self.mode != "stream":
            rows = torch.randint(size, (n, self.E, batch), generator=self.gen, device=device)
            return self.x[rows], self.y[rows]
        seen = self.position + torch.arange(n * batch, device=device)
        rows = ((self.offsets + seen) % size).view(self.E, n, batch).transpose(0, 1)  # (n, E, batch)
        first, last = self.position // size, (self.position + n * batch - 1) // size
        x, y = self._read(last, rows)
        if first != last:  # the chunk straddles two passes: its earlier points in the earlier order
            early = (seen // size == first).view(n, 1, batch).expand_as(rows)
            x_early, y_early = self._read(first, rows)
            x = torch.where(early.view(*early.shape, *[1] * (x.dim() - 3)), x_early, x)
            y = torch.where(early.view(*early.shape, *[1] * (y.dim() - 3)), y_early, y)
        self.position += n * batch
        return x, y

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
        if len(self.sources) == 1:
            return self.sources[0].chunk(n, batch)
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
