"""Batched training engine: E same-shape MLP students [w, n, n, 1] trained as one ensemble.

Tiny models are bound by per-step overhead, not FLOPs, so the E members live as views of one flat
parameter buffer ([E, ...] per tensor), the forward and backward are written out by hand as batched
matmuls, and one Adam update runs over the whole buffer. Nothing per step grows with E: the per-step
Python work is a fixed handful of calls. The same code runs eagerly or under `torch.compile`, on
CPU or CUDA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from scalinglab.core.checkpoint import Checkpointer, fingerprint
from scalinglab.core.progress import Progress
from scalinglab.teacher_student.batches import BatchSource, Sources, chunk_steps
from scalinglab.teacher_student.graphs import EagerSpans, StepGraphs
from scalinglab.teacher_student.schedules import Schedule, log_spaced_steps

LATE = 0.8  # the convergence check's step, as a fraction of training (packing.cell_frame: late_change)
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
threshold_backward = torch.ops.aten.threshold_backward  # ReLU's own backward: 20x faster than where()


def student_param_count(n: int, w: int) -> int:
    """Parameters of the student [w, n, n, 1] with biases: n^2 + (w + 3) n + 1."""
    return n * n + (w + 3) * n + 1


@dataclass
class MLPEnsemble:
    """E students [w, n, n, 1] as [E, ...] views into one flat buffer (tensor-major layout)."""

    E: int
    w: int
    n: int
    flat: torch.Tensor
    shapes: dict = field(init=False)

    def __post_init__(self):
        n, w = self.n, self.w
        self.shapes = {"W1": (w, n), "b1": (1, n), "W2": (n, n), "b2": (1, n), "W3": (n, 1), "b3": (1, 1)}

    @classmethod
    def init(cls, E: int, w: int, n: int, seeds: list[int], device="cpu", dtype=torch.float32) -> MLPEnsemble:
        """Weights N(0, 1/fan_in) as Sharma & Kaplan specify, biases 0; member e drawn from seeds[e]."""
        if len(seeds) != E:
            raise ValueError(f"need one seed per member: {E} members, {len(seeds)} seeds")
        ens = cls(E, w, n, torch.zeros(E * student_param_count(n, w), dtype=dtype))
        views = ens.views(ens.flat)
        for e, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(int(seed))
            for name in ("W1", "W2", "W3"):
                fan_in = views[name].shape[1]
                views[name][e].copy_(
                    torch.randn(views[name].shape[1:], generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
                )
        ens.flat = ens.flat.to(device)
        return ens

    @property
    def params_per_member(self) -> int:
        return student_param_count(self.n, self.w)

    def views(self, buffer: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat buffer laid out like the parameters into named [E, ...] views."""
        out, offset = {}, 0
        for name, shape in self.shapes.items():
            size = self.E * shape[0] * shape[1]
            out[name] = buffer[offset : offset + size].view(self.E, *shape)
            offset += size
        return out

    def member_state(self, e: int) -> dict[str, torch.Tensor]:
        """Member e's weights as an nn.Linear-style state dict (weight is (out, in))."""
        v = self.views(self.flat)
        return {
            "0.weight": v["W1"][e].T.clone(),
            "0.bias": v["b1"][e, 0].clone(),
            "2.weight": v["W2"][e].T.clone(),
            "2.bias": v["b2"][e, 0].clone(),
            "4.weight": v["W3"][e].T.clone(),
            "4.bias": v["b3"][e, 0].clone(),
        }


# Activations are kept feature-major, h^T of shape (E, n, B): per member W^T (n, n) @ h^T (n, B).
# MKL's batched small GEMMs run these shapes 20-40% faster than the row-major h (B, n) @ W (n, n),
# and the output layer becomes (1, n) @ (n, B) instead of a slow (B, n) @ (n, 1) matrix-vector call.
# The parameters keep their [E, in, out] layout; the pass reads them through transposed views, made
# once per buffer (`layer_views`): a step of a narrow ensemble is bound by its ~40 torch calls, not
# by its arithmetic, so every call saved counts.


def layer_views(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The views of the parameter views `p` (MLPEnsemble.views) that the pass reads: W^T and b^T of
    each layer, and W2 and W3 as they are for the backward."""
    out = {name + "T": p[name].transpose(1, 2) for name in ("W1", "b1", "W2", "b2", "W3")}
    return {**out, "b3": p["b3"], "W2": p["W2"], "W3": p["W3"]}


def gradient_views(g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The views of the gradient views `g` that the backward writes into: (E, out, 1) biases, W3 as
    (E, 1, n)."""
    E, n = g["W2"].shape[:2]
    return {
        "W1": g["W1"],
        "b1": g["b1"].view(E, n, 1),
        "W2": g["W2"],
        "b2": g["b2"].view(E, n, 1),
        "W3": g["W3"].view(E, 1, n),
        "b3": g["b3"],
    }


def forward(t: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Ensemble prediction (E, B) for inputs x (E, B, w); `t`: the parameters' layer_views."""
    h1 = torch.baddbmm(t["b1T"], t["W1T"], x.transpose(1, 2)).relu_()
    h2 = torch.baddbmm(t["b2T"], t["W2T"], h1).relu_()
    return torch.baddbmm(t["b3"], t["W3T"], h2).squeeze(1)


def loss_and_grads(t: dict, g: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-member MSE (E,) of a batch x (E, B, w), y (E, B); writes d(MSE)/d(params) into `g`, the
    gradient buffer's gradient_views (`t`: the parameters' layer_views)."""
    batch = y.shape[1]
    xT = x.transpose(1, 2)
    h1 = torch.baddbmm(t["b1T"], t["W1T"], xT).relu_()
    h2 = torch.baddbmm(t["b2T"], t["W2T"], h1).relu_()
    err = torch.baddbmm(t["b3"], t["W3T"], h2).squeeze(1) - y
    grad_out = err.unsqueeze(1) * (2.0 / batch)  # (E, 1, B)
    # gradients of W (in, out) are inputs @ grad^T: (in, B) @ (B, out), written straight into the buffer
    torch.bmm(grad_out, h2.transpose(1, 2), out=g["W3"])
    torch.sum(grad_out, 2, keepdim=True, out=g["b3"])
    # an outer product (K = 1): a broadcast multiply beats a GEMM call and gives the same numbers
    grad_h2 = threshold_backward(t["W3"] * grad_out, h2, 0)
    torch.bmm(h1, grad_h2.transpose(1, 2), out=g["W2"])
    torch.sum(grad_h2, 2, keepdim=True, out=g["b2"])
    grad_h1 = threshold_backward(torch.bmm(t["W2"], grad_h2), h1, 0)
    torch.bmm(xT, grad_h1.transpose(1, 2), out=g["W1"])
    torch.sum(grad_h1, 2, keepdim=True, out=g["b1"])
    return err.square().mean(1)


def adam_update(param, grad, exp_avg, exp_avg_sq, lr, step, fused: bool = True):
    """torch.optim.Adam's update (no weight decay) on flat buffers; lr and step are 0-d tensors, step
    already counting this update. fused: torch's fused kernel, one pass over the buffers (4x faster
    than the eight elementwise ops below, which torch.compile fuses by itself and runs instead)."""
    beta1, beta2 = ADAM_BETAS
    if fused:
        torch._fused_adam_(
            [param],
            [grad],
            [exp_avg],
            [exp_avg_sq],
            [],
            [step],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=ADAM_EPS,
            amsgrad=False,
            maximize=False,
        )
        return
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step).sqrt()
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
    param.addcdiv_(exp_avg, denom * (bias_correction1 / lr), value=-1.0)


class Trainer:
    """Holds the ensemble, its optimiser state and the compiled (or eager) step."""

    def __init__(self, ens: MLPEnsemble, compile: bool = False):
        self.ens = ens
        flat = ens.flat
        self.grad = torch.zeros_like(flat)
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.step_count = torch.zeros((), dtype=torch.float32, device=flat.device)  # as torch's fused Adam keeps it
        self.p_views = ens.views(flat)
        self.t_views, self.g_views = layer_views(self.p_views), gradient_views(ens.views(self.grad))
        self.compiled = torch.compile(self._compiled_step, fullgraph=True, dynamic=False) if compile else None

    def _compiled_step(self, flat, grad, exp_avg, exp_avg_sq, step_count, x, y, lr):
        # views are taken inside the graph so that the compiler sees one flat buffer per state
        return self._update(
            layer_views(self.ens.views(flat)),
            gradient_views(self.ens.views(grad)),
            flat,
            grad,
            exp_avg,
            exp_avg_sq,
            step_count,
            x,
            y,
            lr,
            fused=False,
        )  # the fused kernel has no compile support

    @staticmethod
    def _update(t, g, flat, grad, exp_avg, exp_avg_sq, step_count, x, y, lr, fused=True):
        loss = loss_and_grads(t, g, x, y)
        step_count.add_(1)
        adam_update(flat, grad, exp_avg, exp_avg_sq, lr, step_count, fused)
        return loss

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """One Adam step of every member on its batch x (E, B, w), y (E, B); returns the batch MSEs (E,)."""
        state = (self.ens.flat, self.grad, self.exp_avg, self.exp_avg_sq, self.step_count, x, y, lr)
        if self.compiled is not None:
            return self.compiled(*state)
        return self._update(self.t_views, self.g_views, *state)  # eager: reuse the views made once

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Per-member test MSE (E,) on a shared test set x (M, w), y (M,), or on one test set per
        member, x (E, M, w), y (E, M); chunked so that a chunk's activations stay in a core's L2
        cache (12 students of width 48: 2,048 points take half the time of 8,192)."""
        total = torch.zeros(self.ens.E, dtype=torch.float64, device=x.device)
        size = x.shape[-2]
        for start in range(0, size, chunk):
            if x.dim() == 3:
                xb, yb = x[:, start : start + chunk], y[:, start : start + chunk]
            else:
                xb, yb = x[start : start + chunk].expand(self.ens.E, -1, -1), y[start : start + chunk]
            err = forward(self.t_views, xb) - yb
            total += err.double().square().sum(1)
        return total / size


def _on_host(value):
    """A log entry as numpy (a device tensor is read back; numbers and arrays pass)."""
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _member_test_sets(test_x: list, test_y: list, members: list[int]):
    """The test set each member is evaluated on: the one set of a single bundle, else each member's
    own bundle's, as (E, M, w), (E, M)."""
    if len(members) == 1:
        return test_x[0], test_y[0]
    x = torch.cat([tx.expand(m, -1, -1) for tx, m in zip(test_x, members)])
    return x, torch.cat([ty.expand(m, -1) for ty, m in zip(test_y, members)])


def _run_key(ens, mode, seeds, members, n_evals, compile, lrs, batches, data: list) -> str:
    """What a checkpoint must have been saved by to be resumed: every input of the run."""
    return fingerprint(
        "sources-v2",  # checkpoints of the single-source format are not resumed
        ens.E,
        ens.w,
        ens.n,
        mode,
        seeds,
        members,
        n_evals,
        compile,
        lrs,
        np.asarray(batches),
        *data,
        ens.flat,
    )


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def train(
    ens: MLPEnsemble,
    schedule: Schedule,
    train_x,
    train_y,
    test_x,
    test_y,
    mode: str,
    data_seed,
    n_evals: int = 30,
    compile: bool = False,
    label: str | None = None,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
    members: list[int] | None = None,
    spans: str | None = None,
) -> dict:
    """Train the ensemble; return per-member logs at log-spaced steps as numpy arrays.

    Logs: step, samples (seen per member), lr, train_loss (mean batch MSE since the previous log),
    test_loss (MSE on the test set); each an array of shape (n_logs,) or (n_logs, E).
    A packed ensemble (members from several bundles, e.g. one width of every teacher dimension)
    gives train_x, train_y, test_x, test_y and data_seed as lists, one per bundle, and `members`,
    how many consecutive members each bundle holds; each bundle gets exactly the batches it would
    get trained alone.
    label: name the run in progress lines on stderr (rate and ETA, core/progress.py); None: silent.
    checkpoint: a file path; the run's whole state is saved there every `checkpoint_every_s`
    seconds (and, when that is finite, once more at the end), and a run started with a checkpoint
    of the very same run (same inputs) resumes from it with bit-identical results. The caller removes
    the file once its outputs are written.
    spans: "cuda" steps each chunk of batches that no log or checkpoint interrupts as one replayed
    CUDA graph (graphs.py; checked against eager steps); "eager" runs the same spans step by step
    (the CPU tests' check of the bookkeeping); None: step by step. The numbers are the same.
    Logs stay on the device until the end (a read-back would wait for the queued steps).
    """
    device = ens.flat.device
    trainer = Trainer(ens, compile=compile)
    train_x, train_y, test_x, test_y, seeds = map(_as_list, (train_x, train_y, test_x, test_y, data_seed))
    members = list(members) if members is not None else [ens.E]
    if not (len(train_x) == len(test_x) == len(seeds) == len(members)) or sum(members) != ens.E:
        raise ValueError(f"one data set and seed per bundle, and members {members} summing to E = {ens.E}")
    source = Sources([BatchSource(tx, ty, m, mode, seed) for tx, ty, m, seed in zip(train_x, train_y, members, seeds)])
    eval_x, eval_y = _member_test_sets(test_x, test_y, members)
    lrs = torch.tensor(schedule.lr_per_step(), dtype=ens.flat.dtype, device=device)
    lr_logged = lrs.cpu().numpy()  # the rates as the steps use them, read without a sync per log
    batches = schedule.batch_per_step()
    total = schedule.total_steps
    # log-spaced, and at 80% of training: the convergence check compares the test loss there and at the end
    eval_at = sorted(set(log_spaced_steps(total, n_evals)) | ({round(LATE * total)} if total >= 5 else set()))
    data = [*train_x, *train_y, *test_x, *test_y]
    key = _run_key(ens, mode, seeds, members, n_evals, compile, lrs, batches, data) if checkpoint else ""
    saver = Checkpointer(checkpoint, checkpoint_every_s, key=key)  # hashing the pools takes time: only to resume
    with saver:  # holds the checkpoint's lock until training ends, however it ends
        logs = {"step": [], "samples": [], "lr": [], "train_loss": [], "test_loss": []}
        running = torch.zeros(ens.E, dtype=torch.float64, device=device)
        count, samples, first_step, next_eval, earlier_seconds = 0, 0, 0, 1, 0.0
        started = time.perf_counter()

        def log(step: int):
            nonlocal count
            logs["step"].append(step)
            logs["samples"].append(samples)
            logs["lr"].append(float(lr_logged[min(step, total - 1)]) if total else 0.0)
            logs["train_loss"].append(running / count if count else torch.full_like(running, math.nan))
            logs["test_loss"].append(trainer.evaluate(eval_x, eval_y))
            running.zero_()  # in place: a captured graph adds to this very buffer
            count = 0

        def state(step: int) -> dict:
            return {
                "step": step,
                "flat": ens.flat.cpu(),
                "exp_avg": trainer.exp_avg.cpu(),
                "exp_avg_sq": trainer.exp_avg_sq.cpu(),
                "step_count": trainer.step_count.cpu(),
                **source.state(),
                "logs": {k: [_on_host(v) for v in values] for k, values in logs.items()},
                "running": running.cpu(),
                "count": count,
                "samples": samples,
                "next_eval": next_eval,
                "seconds": earlier_seconds + time.perf_counter() - started,
            }

        saved = saver.load()
        if saved is None:
            log(0)
        else:
            ens.flat.copy_(saved["flat"])  # in place: the trainer's views stay valid
            for name in ("exp_avg", "exp_avg_sq", "step_count"):
                getattr(trainer, name).copy_(saved[name])
            source.load(saved)
            logs = saved["logs"]
            running.copy_(saved["running"])
            count, samples, next_eval = saved["count"], saved["samples"], saved["next_eval"]
            first_step, earlier_seconds = saved["step"], saved["seconds"]
        watch = Progress(label, total, "steps", done=first_step)

        def note():
            return f"test MSE median {np.median(_on_host(logs['test_loss'][-1])):.3g} at step {logs['step'][-1]}"

        # batches come in chunks of steps (aligned to multiples of their length, which divides the
        # checkpoint check interval, and never across a change of batch size): a checkpoint always
        # falls between chunks, so a resumed run draws the very same batches
        ends = np.r_[np.flatnonzero(np.diff(batches)) + 1, total]
        chunk, chunk_start = None, first_step
        lr_at = lrs.unbind(0)  # each step's 0-d view, made at once: a per-step index is one more torch call
        runner = None if spans is None else (StepGraphs if spans == "cuda" else EagerSpans)(trainer, running)
        step = first_step
        while step < total:
            batch = int(batches[step])
            if chunk is None or step - chunk_start >= len(chunk[0]):
                n = chunk_steps(ens.E, batch, ens.w)
                n = min(n - step % n, int(ends[np.searchsorted(ends, step, side="right")]) - step)
                xs, ys = source.chunk(n, batch)
                chunk, chunk_start = (xs.unbind(0), ys.unbind(0)), step
            # a whole chunk as one span when no log falls inside it (checkpoints fall between chunks)
            span = len(chunk[0])
            if runner is not None and runner.enabled and step == chunk_start and eval_at[next_eval] >= step + span:
                runner.run(xs, ys, lrs[step : step + span])
                taken = span
            else:
                running += trainer.step(chunk[0][step - chunk_start], chunk[1][step - chunk_start], lr_at[step])
                taken = 1
            step += taken
            count += taken
            samples += taken * batch
            if step == eval_at[next_eval]:
                log(step)
                next_eval += 1
            if saver.due(step) and step < total:
                saver.save(state(step))
            watch.update(step, note)
        if saver.path is not None and first_step < total and math.isfinite(checkpoint_every_s):
            saver.save(state(total))  # the finished run: a packed job killed later resumes it at once
        watch.finish(note)
        logs = {k: np.stack([_on_host(v) for v in values]) for k, values in logs.items()}
        logs["seconds"] = earlier_seconds + time.perf_counter() - started
        return logs
