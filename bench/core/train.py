"""Training and evaluation.

AdamW (weight decay on matrices only: never on biases, norm gains, temperatures or any parameter
of fewer than two dimensions, nor on one tagged ``no_weight_decay``), linear warm-up then cosine
decay, and optionally Grokfast's gradient filter. Each run has three independent seeded streams: train batches; a validation set, which
alone decides the early stop (and, in the report, the learning rate); and a test set, which
gives every number the report prints. Both held-out sets are evaluated every ``eval_every``
steps (the learning curve); the run stops once validation accuracy has held the target for
``target_hold`` evaluations in a row.

Every run ends in one budget status: "reached target" (the early stop), "converged" (its
validation loss fell by no more than ``plateau_drop`` of itself over the last ``plateau_window``
steps) or "still improving". Under the warmup-stable-decay schedule the status is decided where
the decay would begin; a run still improving there has its budget doubled, up to
``max_extension`` times ``steps``, so that a run is cut short only at a stated maximum and says so.
A run whose validation accuracy already stands at its task's ``solved_at`` is not extended: more
steps cannot change a verdict that it solves the task, and on a 2-core machine its steps are the
ones a run that does not yet solve it needs.

Loss and accuracy count only scored positions (targets != IGNORE_INDEX).
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm import tqdm

from tasks import IGNORE_INDEX, SPLITS, Batch, Task


def stream(seed: int, name: str) -> torch.Generator:
    """The run's generator for the named stream ("train", "validation", "test", "analysis/<name>"):
    seeded from a hash of (seed, name), so that streams are independent and any seed is valid."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    exact_match: float
    scored: int
    # per slice value: {"slice", "value", "correct", "scored"} (see tasks.base.Batch.slices)
    slices: list[dict] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss, "accuracy": self.accuracy, "exact_match": self.exact_match, "scored": self.scored}


@dataclass
class Outcome:
    status: str  # "completed", or "diverged" on a non-finite training loss
    steps_run: int
    evaluations: dict[str, Evaluation]  # the last evaluation of each held-out split
    curve: list[dict] = field(default_factory=list)
    steps_to_target: dict[str, int | None] = field(default_factory=dict)  # first step at the target, per split
    train_seconds: float = 0.0  # time in training steps alone (evaluations excluded)
    tokens_per_second: float = 0.0
    budget: dict = field(default_factory=dict)  # status, final budget in steps, extensions, last loss drop
    chance_given_context: float = math.nan  # the test set's chance level given the context


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over warmup_steps, then cosine decay to min_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


REACHED, CONVERGED, IMPROVING = "reached target", "converged", "still improving"


class Budget:
    """The run's step budget and learning-rate schedule, which a wsd run may extend.

    cosine: warm-up, then cosine decay to min_lr_ratio at train.steps; the budget is fixed.
    wsd: warm-up, a constant rate, and a linear decay to min_lr_ratio over the last decay_fraction
    of the budget. At the last evaluation before the decay's start the run is judged: still
    improving, with room below max_extension x steps and below its task's solved_at on validation,
    doubles its budget (the rate stays constant); otherwise the decay begins there and the run's
    status is what the judgement found."""

    def __init__(self, train: DictConfig, steps: int | None = None, solved_at: float = 1.0) -> None:
        self.train = train
        self.steps = train.steps if steps is None else steps  # 0: an evaluation-only run
        self.solved_at = solved_at
        self.most = self.steps * train.max_extension
        self.decay_start: int | None = None
        self.extensions = 0
        self.status: str | None = None  # set once the run is judged, or reaches its target
        self.loss_drop: float | None = None  # the drop in validation loss that decided the status

    def factor(self, step: int) -> float:
        train = self.train
        if train.schedule == "cosine":
            return learning_rate_factor(step, train.warmup_steps, self.steps, train.min_lr_ratio)
        warmup = (step + 1) / train.warmup_steps if step < train.warmup_steps else 1.0
        if self.decay_start is None or step < self.decay_start:
            return warmup
        progress = min(1.0, (step - self.decay_start) / max(1, self.steps - self.decay_start))
        return min(warmup, 1 - (1 - train.min_lr_ratio) * progress)  # a budget shorter than its warm-up decays without a jump

    def judge(self, step: int, curve: list[dict]) -> None:
        """At an evaluation: under wsd, past the decay's start and not yet decaying, extend the
        budget of a run still improving, or begin the decay; under cosine, judge at the last step."""
        train = self.train
        if train.schedule == "cosine":
            if step >= self.steps:
                drop = loss_drop(curve, train.plateau_window)
                self.loss_drop, self.status = drop, IMPROVING if drop > train.plateau_drop else CONVERGED
            return
        # judged at the last evaluation before the decay's start (the next would be past it), so that a
        # run evaluated rarely still decays
        if self.decay_start is not None or step + train.eval_every <= self.steps - round(train.decay_fraction * self.steps):
            return
        self.loss_drop = loss_drop(curve, train.plateau_window)
        still_improving = self.loss_drop > train.plateau_drop
        solved = curve[-1].get("validation_accuracy", 0.0) >= self.solved_at
        if still_improving and not solved and self.steps < self.most:
            self.steps = min(2 * self.steps, self.most)
            self.extensions += 1
            return
        self.decay_start = step
        self.status = IMPROVING if still_improving else CONVERGED


def loss_drop(curve: list[dict], window: int) -> float:
    """The share by which validation loss fell from `window` steps before the last evaluation (or
    from the first evaluation, in a run shorter than that) to the last one."""
    points = [(p["step"], p["validation_loss"]) for p in curve if math.isfinite(p.get("validation_loss", math.nan))]
    if len(points) < 2:
        return math.nan
    last_step, last = points[-1]
    earlier = [loss for step, loss in points if step <= last_step - window] or [points[0][1]]
    return (earlier[-1] - last) / earlier[-1] if earlier[-1] > 0 else 0.0


def decays(parameter: nn.Parameter) -> bool:
    """Weight decay shrinks matrices (projections, embeddings) only: not biases, gains or scalars."""
    return parameter.ndim >= 2 and not getattr(parameter, "no_weight_decay", False)


def make_optimizer(model: nn.Module, train: DictConfig, budget: Budget | None = None) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    parameters = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in parameters if decays(p)], "weight_decay": train.weight_decay},
        {"params": [p for p in parameters if not decays(p)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, (budget or Budget(train)).factor)
    return optimizer, scheduler


def scored_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over scored positions; 0 rather than NaN when none is scored."""
    total = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


class GrokfastEMA:
    """Grokfast-EMA (Lee et al. 2024, arXiv:2405.20233): amplify the slow component of the gradient,

        mu <- alpha mu + (1 - alpha) g,        g <- g + lambda mu

    which they report speeds grokking up by up to 50x."""

    def __init__(self, alpha: float, weight: float) -> None:
        self.alpha, self.weight = alpha, weight
        self.averages: dict[nn.Parameter, Tensor] = {}

    def __call__(self, parameters) -> None:
        for parameter in parameters:
            if parameter.grad is None:
                continue
            average = self.averages.get(parameter)
            if average is None:
                self.averages[parameter] = average = parameter.grad.detach().clone()
            else:
                average.mul_(self.alpha).add_(parameter.grad, alpha=1 - self.alpha)
            parameter.grad.add_(average, alpha=self.weight)


@dataclass
class StepResult:
    loss: float
    correct: int
    scored: int


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    inputs: Tensor,
    targets: Tensor,
    grad_clip: float,
    gradient_filter: GrokfastEMA | None = None,
) -> StepResult:
    logits = model(inputs)
    loss = scored_loss(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if gradient_filter is not None:
        gradient_filter(model.parameters())
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    optimizer.step()
    scheduler.step()
    with torch.no_grad():
        mask = targets != IGNORE_INDEX
        correct = ((logits.argmax(-1) == targets) & mask).sum()
    return StepResult(loss.item(), int(correct), int(mask.sum()))


@torch.no_grad()
def evaluate(model: nn.Module, batch: Batch, chunk: int) -> Evaluation:
    """Loss, accuracy and exact match of `model` on the scored positions of `batch`, run `chunk`
    sequences at a time, with accuracy per value of each of the batch's slices."""
    was_training = model.training
    model.eval()
    loss_sum, hits, exact = 0.0, [], 0
    for start in range(0, len(batch), chunk):
        inputs, targets = batch.inputs[start : start + chunk], batch.targets[start : start + chunk]
        logits = model(inputs)
        loss_sum += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum").item()
        mask = targets != IGNORE_INDEX
        chunk_hits = (logits.argmax(-1) == targets) & mask
        exact += ((chunk_hits == mask).all(dim=1) & mask.any(dim=1)).sum().item()
        hits.append(chunk_hits)
    model.train(was_training)
    mask = batch.targets != IGNORE_INDEX
    hits = torch.cat(hits)
    scored, sequences = int(mask.sum()), int(mask.any(dim=1).sum())
    return Evaluation(
        loss=loss_sum / max(scored, 1),
        accuracy=int(hits.sum()) / max(scored, 1),
        exact_match=exact / max(sequences, 1),
        scored=scored,
        slices=slice_counts(batch.slices, hits, mask),
    )


def slice_counts(slices: dict[str, Tensor], hits: Tensor, mask: Tensor) -> list[dict]:
    rows = []
    for name, values in slices.items():
        values, correct = values[mask], hits[mask]
        for value in values.unique().tolist():
            at_value = values == value
            rows.append({"slice": name, "value": value, "correct": int(correct[at_value].sum()), "scored": int(at_value.sum())})
    return rows


class LoadMeter:
    """The machine's load while training: the 1-minute load average, and the share of the wall time
    that this process got on the cores it asked for (near 1 alone; lower when others compete)."""

    def __init__(self) -> None:
        self.threads = torch.get_num_threads()
        self.reset()

    def reset(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.reset()
        return {"load_1min": os.getloadavg()[0], "cpu_share": cpu / (wall * self.threads) if wall > 0 else float("nan")}


def train(model: nn.Module, task: Task, train: DictConfig, seed: int, device: torch.device, progress: bool, steps: int) -> Outcome:
    """Train `model` on `task` for up to `steps` steps (0: evaluate only), or the longer budget a
    wsd run still improving extends to (Budget)."""
    train_stream = stream(seed, "train")
    size = train.eval_batches * train.batch_size
    held_out = {split: task.evaluation_set(split, size, stream(seed, split)).to(device) for split in SPLITS}
    train_set = task.train_set()
    train_set = train_set.to(device) if train_set is not None else None
    budget = Budget(train, steps, task.solved_at)
    optimizer, scheduler = make_optimizer(model, train, budget)
    # compiled for the training steps only: evaluation's batches have other shapes, each a recompilation
    step_model = torch.compile(model) if train.compile else model
    gradient_filter = GrokfastEMA(train.grokfast_alpha, train.grokfast_lambda) if train.grokfast_lambda > 0 else None
    model.train()
    outcome = Outcome(status="completed", steps_run=0, evaluations={}, steps_to_target={split: None for split in SPLITS})
    interval = new_interval()
    load = LoadMeter()
    tokens = 0
    held = 0

    def record_evaluation(step: int, lr: float) -> bool:
        """Evaluate at `step`; True once validation accuracy has held the target long enough to stop."""
        nonlocal held, interval
        point = {"step": step, "lr": lr, **training_statistics(model, train_set, interval, train.batch_size)}
        point.update(load.read())
        for split, batch in held_out.items():
            outcome.evaluations[split] = evaluation = evaluate(model, batch, train.batch_size)
            point.update({f"{split}_{key}": value for key, value in evaluation.metrics().items() if key != "scored"})
            if train.target_accuracy is not None and evaluation.accuracy >= train.target_accuracy and outcome.steps_to_target[split] is None:
                outcome.steps_to_target[split] = step
        outcome.curve.append(point)
        interval = new_interval()
        reached = train.target_accuracy is not None and outcome.evaluations["validation"].accuracy >= train.target_accuracy
        held = held + 1 if reached else 0
        load.reset()
        return held >= train.target_hold

    record_evaluation(0, scheduler.get_last_lr()[0])
    bar = tqdm(total=steps, disable=not progress or steps == 0, desc=task.name, unit="step")
    step = 0
    while step < budget.steps:
        step += 1
        lr = scheduler.get_last_lr()[0]  # the rate this step uses
        started = time.perf_counter()
        batch = train_set if train_set is not None and train.batch_size >= len(train_set) else task.sample(train.batch_size, train_stream).to(device)
        result = train_step(step_model, optimizer, scheduler, batch.inputs, batch.targets, train.grad_clip, gradient_filter)
        elapsed = time.perf_counter() - started
        outcome.train_seconds += elapsed
        outcome.steps_run = step
        tokens += batch.inputs.numel()
        for key, value in (("loss", result.loss), ("correct", result.correct), ("scored", result.scored), ("steps", 1),
                           ("seconds", elapsed), ("tokens", batch.inputs.numel())):  # fmt: skip
            interval[key] += value
        bar.update()
        if not math.isfinite(result.loss):
            outcome.status = "diverged"
            break
        if step % train.eval_every == 0 or step == budget.steps:
            if record_evaluation(step, lr):
                budget.status = REACHED
                break
            budget.judge(step, outcome.curve)
            bar.total = budget.steps
            bar.set_postfix(loss=f"{result.loss:.3f}", val_acc=f"{outcome.evaluations['validation'].accuracy:.3f}")
    bar.close()
    outcome.budget = {"status": budget.status if steps else None, "steps": budget.steps, "extensions": budget.extensions,
                      "validation_loss_drop": budget.loss_drop if budget.loss_drop is not None and math.isfinite(budget.loss_drop) else None}  # fmt: skip
    outcome.chance_given_context = task.chance_given_context(held_out["test"].to("cpu"))
    outcome.tokens_per_second = tokens / outcome.train_seconds if outcome.train_seconds else 0.0
    return outcome


def new_interval() -> dict[str, float]:
    """Sums over the training steps since the last evaluation point."""
    return dict.fromkeys(("loss", "correct", "scored", "steps", "seconds", "tokens"), 0)


def training_statistics(model: nn.Module, train_set: Batch | None, interval: dict, chunk: int) -> dict:
    """Train loss and accuracy at an evaluation point: on the whole training set where the task has
    one, otherwise the mean over the training batches since the last point (None at step 0); and
    the training throughput of those steps."""
    if train_set is not None:
        evaluation = evaluate(model, train_set, chunk)
        statistics = {"train_loss": evaluation.loss, "train_accuracy": evaluation.accuracy}
    elif interval["steps"]:
        statistics = {"train_loss": interval["loss"] / interval["steps"], "train_accuracy": interval["correct"] / max(interval["scored"], 1)}
    else:
        statistics = {"train_loss": None, "train_accuracy": None}
    statistics["tokens_per_s"] = interval["tokens"] / interval["seconds"] if interval["seconds"] else None
    return statistics
