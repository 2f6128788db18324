"""The training loop: recipe, schedule, determinism, evaluation.

Everything here is a plain function of (maps, recipe): the same maps, recipe
and thread count give bitwise the same weights and loss history on the CPU.
Writing a run folder lives in :mod:`training.run`; the CLI in
:mod:`training.__main__`.

The recipe itself (fields, defaults, allowed values) is :mod:`training.recipe`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from .model import ConvAutoencoder
from .recipe import LOSSES, SCHEDULES, Recipe

#: Final training MSE of the course report (Adam 1e-3, MSE, 100 epochs, batch 61).
COURSE_REPORT_MSE = 0.0316


@dataclass
class History:
    """Per-epoch records (plain lists, JSON-ready)."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_mse: list = field(default_factory=list)
    val_mse: list = field(default_factory=list)
    lr: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seed torch and force deterministic kernels with a fixed thread count, for the block only.

    The thread count is part of the recipe because a different count sums in
    a different order (1 and 2 threads differ in the last bits); a fixed
    count gives bitwise-equal runs. The caller's RNG state, thread count and
    determinism flag are restored afterwards, so training inside a larger
    program (or a test session) leaves no global trace.
    """
    old_threads = torch.get_num_threads()
    old_flag = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(max(1, int(threads)))
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)
            torch.use_deterministic_algorithms(old_flag)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    """The per-step learning-rate schedule named by ``recipe.schedule``."""
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, total_steps=total, pct_start=recipe.warmup, cycle_momentum=False
        )
    if recipe.schedule == "cosine":
        warm = max(1, int(round(recipe.warmup * total)))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    raise ValueError(f"unknown schedule {recipe.schedule!r}; choose one of {', '.join(SCHEDULES)}")


def _loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "mse":
        return F.mse_loss
    if name == "bce":
        return F.binary_cross_entropy
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, batch_size: int = 128) -> dict:
    """Reconstruction figures of ``model`` on NCHW one-hot maps ``x`` (eval mode).

    * ``mse``: mean squared error over all N×3×26×26 elements (the course definition);
    * ``accuracy``: share of dies whose argmax over the 3 channels matches the input;
    * ``defect_recall``: share of true defect dies reconstructed as defect.
    """
    was_training = model.training
    model.eval()
    sq = 0.0
    correct = 0
    defect_true = 0
    defect_hit = 0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        out = model(xb)
        sq += float(((out.double() - xb.double()) ** 2).sum())
        # argmax over a contiguous last axis: over dim=1 of NCHW (strided) it
        # took longer than the forward pass and doubled the epoch time.
        pred = out.permute(0, 2, 3, 1).contiguous().argmax(dim=-1)
        true = xb.permute(0, 2, 3, 1).contiguous().argmax(dim=-1)
        correct += int((pred == true).sum())
        is_defect = true == 2
        defect_true += int(is_defect.sum())
        defect_hit += int((pred[is_defect] == 2).sum())
    model.train(was_training)
    n_el = x.numel()
    n_dies = x.shape[0] * x.shape[2] * x.shape[3]
    return {
        "mse": sq / n_el,
        "accuracy": correct / n_dies,
        "defect_recall": defect_hit / defect_true if defect_true else float("nan"),
    }


@dataclass
class TrainResult:
    model: ConvAutoencoder
    history: History
    metrics: dict


def train(
    x_train: torch.Tensor,
    recipe: Recipe,
    x_val: Optional[torch.Tensor] = None,
    *,
    progress: Optional[Callable[[int, int, float], None]] = None,
    eval_every_epoch: bool = True,
) -> TrainResult:
    """Train a fresh :class:`ConvAutoencoder` on NCHW maps ``x_train`` with ``recipe``.

    Batches are reshuffled every epoch by a generator seeded from
    ``recipe.seed``. ``progress(epoch, step, running_loss)`` is called after
    every step. Returns the model (eval mode), the history and final metrics
    evaluated after the last epoch (not running averages).
    """
    with deterministic(recipe.seed, recipe.threads):
        return _train(x_train, recipe, x_val, progress, eval_every_epoch)


def _train(
    x_train: torch.Tensor,
    recipe: Recipe,
    x_val: Optional[torch.Tensor],
    progress: Optional[Callable[[int, int, float], None]],
    eval_every_epoch: bool,
) -> TrainResult:
    t0 = time.perf_counter()
    model = ConvAutoencoder()
    opt_cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = x_train.shape[0]
    steps = math.ceil(n / recipe.batch_size)
    sched = make_scheduler(opt, recipe, steps)
    loss_fn = _loss_fn(recipe.loss)
    gen = torch.Generator().manual_seed(recipe.seed)
    history = History()
    model.train()
    for epoch in range(1, recipe.epochs + 1):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        lr_epoch = opt.param_groups[0]["lr"]
        for step in range(steps):
            idx = perm[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            xb = x_train[idx]
            out = model(xb)
            loss = loss_fn(out, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
            opt.step()
            sched.step()
            total += float(loss.detach()) * xb.shape[0]
            if progress is not None:
                progress(epoch, step + 1, total / min(n, (step + 1) * recipe.batch_size))
        history.epoch.append(epoch)
        history.train_loss.append(total / n)
        history.lr.append(lr_epoch)
        if eval_every_epoch or epoch == recipe.epochs:
            history.train_mse.append(evaluate(model, x_train)["mse"])
            history.val_mse.append(evaluate(model, x_val)["mse"] if x_val is not None and len(x_val) else None)
    model.eval()
    final = evaluate(model, x_train)
    metrics: dict = {
        "train_mse": final["mse"],
        "train_accuracy": final["accuracy"],
        "train_defect_recall": final["defect_recall"],
        "n_train": int(n),
    }
    if x_val is not None and len(x_val):
        v = evaluate(model, x_val)
        metrics.update(val_mse=v["mse"], val_accuracy=v["accuracy"], val_defect_recall=v["defect_recall"], n_val=int(len(x_val)))
    else:
        metrics.update(val_mse=None, val_accuracy=None, val_defect_recall=None, n_val=0)
    metrics.update(epochs=recipe.epochs, seconds=round(time.perf_counter() - t0, 2))
    return TrainResult(model=model, history=history, metrics=metrics)
