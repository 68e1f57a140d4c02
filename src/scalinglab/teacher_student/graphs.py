"""CUDA graphs for the students' training loop: a span of K consecutive steps (one chunk of batches)
captured once and replayed, so that a span costs one launch instead of K x ~25 kernel launches and
their Python. On a GPU a narrow ensemble's step is launch-bound: session 3's H100 ran one 3-seed
bundle at ~1,700 steps/s, a few µs of arithmetic per kernel (docs/benchmarks.md).

The graph replays the very kernels of the eager steps on the same buffers, so it must give the same
numbers bit for bit; each capture is checked once against the same span stepped eagerly, and a
difference, or an operation the capture refuses, turns the graphs off for the run with a warning
(the eager result is kept): never a silent change of results.
"""

from __future__ import annotations

import sys

import torch


class EagerSpans:
    """Spans of steps run one step after another: the bookkeeping of StepGraphs without a graph
    (what the CPU tests check the span loop with).

    `running`: the device tensor the steps add their batch losses to (the loop's train-loss sum);
    it, like every buffer the trainer updates, keeps its storage for the whole run."""

    def __init__(self, trainer, running: torch.Tensor):
        self.trainer, self.running = trainer, running
        self.enabled = True

    def run(self, xs: torch.Tensor, ys: torch.Tensor, lrs: torch.Tensor) -> None:
        """len(xs) steps on batches xs (K, E, B, w), ys (K, E, B) at rates lrs (K,)."""
        self._steps(xs, ys, lrs)

    def _steps(self, xs, ys, lrs) -> None:
        for k in range(xs.shape[0]):
            self.running += self.trainer.step(xs[k], ys[k], lrs[k])

    def _state(self) -> list[torch.Tensor]:
        t = self.trainer
        return [t.ens.flat, t.grad, t.exp_avg, t.exp_avg_sq, t.step_count, self.running]


class StepGraphs(EagerSpans):
    """Spans of steps of one Trainer, captured once per (steps, batch) shape and replayed."""

    def __init__(self, trainer, running: torch.Tensor):
        super().__init__(trainer, running)
        self.graphs: dict[tuple, tuple] = {}

    def run(self, xs: torch.Tensor, ys: torch.Tensor, lrs: torch.Tensor) -> None:
        key = (xs.shape[0], xs.shape[2])
        if key not in self.graphs:
            self._capture_checked(key, xs, ys, lrs)  # runs the span too
            return
        graph, static_x, static_y, static_lr = self.graphs[key]
        static_x.copy_(xs)
        static_y.copy_(ys)
        static_lr.copy_(lrs)
        graph.replay()

    def _capture_checked(self, key, xs, ys, lrs) -> None:
        before = [t.clone() for t in self._state()]
        # the span eagerly, on a side stream as torch.cuda.graph asks of warm-up (lazy cuBLAS and
        # compiler set-up happen here, not in the capture)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._steps(xs, ys, lrs)
        torch.cuda.current_stream().wait_stream(side)
        eager = [t.clone() for t in self._state()]
        for t, b in zip(self._state(), before):
            t.copy_(b)
        static = (xs.clone(), ys.clone(), lrs.clone())
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._steps(*static)
            graph.replay()
        except RuntimeError as exc:  # an operation the capture refuses: the eager span stands
            return self._give_up(eager, f"capturing a CUDA graph of {key[0]} steps failed ({exc})")
        differs = [i for i, (t, e) in enumerate(zip(self._state(), eager)) if not torch.equal(t, e)]
        if differs:
            return self._give_up(
                eager, f"a CUDA graph of {key[0]} steps gave other numbers than the same steps run eagerly"
            )
        self.graphs[key] = (graph, *static)

    def _give_up(self, eager: list[torch.Tensor], why: str) -> None:
        """Keep the eager span's result and step eagerly from now on, saying why."""
        for t, e in zip(self._state(), eager):
            t.copy_(e)
        self.enabled = False
        first_line = why.splitlines()[0]
        print(f"warning: {first_line}; training on without graphs (engine.cuda_graphs: false)", file=sys.stderr)
