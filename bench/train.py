"""Training and evaluation: AdamW with linear warm-up and cosine decay, a fixed held-out set
evaluated every ``eval_every`` steps (the learning curve), and an early stop once eval accuracy
has held at the target for ``target_hold`` evaluations in a row.

Loss and accuracy count only scored positions (targets != IGNORE_INDEX).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm import tqdm

from tasks import IGNORE_INDEX, Task


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    exact_match: float


@dataclass
class Outcome:
    status: str  # "completed", or "diverged" on a non-finite training loss
    steps_run: int
    final: Evaluation
    curve: list[dict] = field(default_factory=list)
    steps_to_target: int | None = None
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over warmup_steps, then cosine decay to min_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, train: DictConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, train.warmup_steps, train.steps, train.min_lr_ratio)
    )
    return optimizer, scheduler


def scored_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over scored positions; 0 rather than NaN when none is scored."""
    total = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    inputs: Tensor,
    targets: Tensor,
    grad_clip: float,
) -> Tensor:
    loss = scored_loss(model(inputs), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    optimizer.step()
    scheduler.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> Evaluation:
    was_training = model.training
    model.eval()
    loss_sum = correct = scored = exact = sequences = 0.0
    for inputs, targets in batches:
        logits = model(inputs)
        mask = targets != IGNORE_INDEX
        loss_sum += F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        ).item()
        hits = (logits.argmax(-1) == targets) & mask
        correct += hits.sum().item()
        scored += mask.sum().item()
        has_scored = mask.any(dim=1)
        exact += ((hits == mask).all(dim=1) & has_scored).sum().item()
        sequences += has_scored.sum().item()
    model.train(was_training)
    return Evaluation(
        loss=loss_sum / max(scored, 1), accuracy=correct / max(scored, 1), exact_match=exact / max(sequences, 1)
    )


def train(
    model: nn.Module, task: Task, train: DictConfig, seed: int, device: torch.device, progress: bool, steps: int
) -> Outcome:
    """Train `model` on `task` for up to `steps` steps (0: evaluate only); train and eval batches
    come from disjoint seeds (2 seed and 2 seed + 1)."""
    train_stream = torch.Generator().manual_seed(2 * seed)
    eval_stream = torch.Generator().manual_seed(2 * seed + 1)
    eval_batches = [
        tuple(t.to(device) for t in task.sample(train.batch_size, eval_stream)) for _ in range(train.eval_batches)
    ]
    optimizer, scheduler = make_optimizer(model, train)
    model.train()
    outcome = Outcome(status="completed", steps_run=0, final=evaluate(model, eval_batches))
    held = 0

    def record_evaluation(step: int, loss: float | None) -> bool:
        """Evaluate at `step`; True once the target has held long enough to stop."""
        nonlocal held
        if step > 0:
            outcome.final = evaluate(model, eval_batches)
        outcome.curve.append(curve_point(step, loss, scheduler, outcome.final))
        reached = train.target_accuracy is not None and outcome.final.accuracy >= train.target_accuracy
        held = held + 1 if reached else 0
        if reached and outcome.steps_to_target is None:
            outcome.steps_to_target = step
        return held >= train.target_hold

    record_evaluation(0, None)
    bar = tqdm(total=steps, disable=not progress or steps == 0, desc=task.name, unit="step")
    for step in range(1, steps + 1):
        started = time.perf_counter()
        inputs, targets = (t.to(device) for t in task.sample(train.batch_size, train_stream))
        loss = train_step(model, optimizer, scheduler, inputs, targets, train.grad_clip).item()
        outcome.train_seconds += time.perf_counter() - started
        outcome.steps_run = step
        bar.update()
        if not math.isfinite(loss):
            outcome.status = "diverged"
            break
        if step % train.eval_every == 0 or step == steps:
            stop = record_evaluation(step, loss)
            bar.set_postfix(loss=f"{loss:.3f}", eval_acc=f"{outcome.final.accuracy:.3f}")
            if stop:
                break
    bar.close()
    tokens = outcome.steps_run * train.batch_size * task.seq_len
    outcome.tokens_per_second = tokens / outcome.train_seconds if outcome.train_seconds else 0.0
    return outcome


def curve_point(step: int, train_loss: float | None, scheduler: torch.optim.lr_scheduler.LambdaLR, evaluation: Evaluation) -> dict:
    return {
        "step": step,
        "train_loss": train_loss,
        "eval_loss": evaluation.loss,
        "eval_accuracy": evaluation.accuracy,
        "eval_exact_match": evaluation.exact_match,
        "lr": scheduler.get_last_lr()[0],
    }
