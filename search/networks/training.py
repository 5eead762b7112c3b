"""Training one architecture from scratch: the recipe, the epoch loop that checkpoints after
every epoch and resumes from the last one, and the result it records.

A recipe is SGD with momentum, a cosine or step learning-rate schedule, label smoothing and
weight decay: the FBNet recipe for final networks, at a scale named for the data (RECIPES:
`fmnist-full` for Fashion-MNIST, `small` for the rest). search.train runs it from the command
line; search.protocols.standalone trains many networks briefly with it.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fbnet.arch import Architecture, save_architecture
from fbnet.errors import UserError
from fbnet.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from fbnet.model import FBNet
from search.data import DEFAULT_DATA
from search.runs import TrainRun

CHECKPOINT_FORMAT = "fbnet-train-checkpoint/1"


@dataclass
class Recipe:
    """Everything that decides the training run (saved with the checkpoint). `name` says which
    named recipe (RECIPES) it is, with the fields changed from it, e.g. `fmnist-full(epochs=4)`."""

    name: str = "custom"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step
    step_milestones: tuple[float, ...] = (0.25, 0.5, 0.75)  # fractions of the run, lr x0.1 each
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    dropout: float = 0.0
    max_steps_per_epoch: int | None = None
    seed: int = 0

    def lr_at(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """Learning rate for a step; epochs are 0-based, the schedule is per step."""
        t = epoch + step / max(steps_per_epoch, 1)
        if t < self.warmup_epochs:
            return self.lr * (t + 1 / max(steps_per_epoch, 1)) / self.warmup_epochs
        if self.schedule == "cosine":
            span = max(self.epochs - self.warmup_epochs, 1e-9)
            return 0.5 * self.lr * (1 + math.cos(math.pi * (t - self.warmup_epochs) / span))
        drops = sum(epoch >= round(m * self.epochs) for m in self.step_milestones)
        return self.lr * 0.1 ** drops

    def check(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise UserError(f"--batch-size must be at least 2 (batch norm), got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise UserError("--max-steps must be at least 1")


# Named recipes. Every one trains on the whole train split (the data's own augmentation:
# for Fashion-MNIST shifts of up to 2 pixels and horizontal flips, search.data) and reports the
# last epoch's top-1 on the whole val split: no epoch is selected by its val score.
RECIPES: dict[str, Recipe] = {
    # Fashion-MNIST at the dataset's real accuracy level: 60,000 images, batch 128, SGD
    # (Nesterov) at lr 0.1 with one warm-up epoch and a cosine decay over 6 epochs, weight decay
    # 5e-4, label smoothing 0.1. Channels-last on a CPU; bf16 autocast is several times slower
    # on a CPU without bf16 units and torch.compile's gain is within a shared machine's spread
    # (benchmarks/training_speed.py, docs/results.md).
    "fmnist-full": Recipe(name="fmnist-full", epochs=6, batch_size=128, lr=0.1,
                          weight_decay=5e-4, warmup_epochs=1, label_smoothing=0.1),
    # The small-data defaults for other datasets (digits, synthetic, a first look at a new one).
    "small": Recipe(name="small"),
}
DEFAULT_RECIPE = {"fashion-mnist": "fmnist-full"}  # by dataset; "small" for the others


def default_recipe_name(data_spec: str) -> str:
    return DEFAULT_RECIPE.get(data_spec.partition(":")[0], "small")


def named_recipe(name: str, **changes) -> Recipe:
    """The recipe `name` with `changes` (fields set to other values), named so it says both."""
    try:
        base = RECIPES[name]
    except KeyError:
        raise UserError(f"unknown recipe {name!r}; named recipes: {', '.join(RECIPES)}") from None
    changed = {k: v for k, v in changes.items() if v is not None and getattr(base, k) != v}
    epochs = changed.get("epochs", base.epochs)
    if "warmup_epochs" not in changed and base.warmup_epochs >= epochs:
        changed["warmup_epochs"] = epochs - 1  # a shortened run still decays its rate
    label = name + ("(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in changed.items()) + ")" if changed else "")
    recipe = replace(base, name=label, **changed)
    recipe.check()
    return recipe


@dataclass
class EpochLog:
    epoch: int  # 1-based
    lr: float
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    seconds: float


@dataclass
class TrainResult:
    arch: dict
    arch_name: str
    data: str
    resolution: int
    num_classes: int
    macs: int
    params: int
    epochs_done: int
    top1: float  # final epoch's val top-1, in [0, 1]
    best_top1: float
    best_epoch: int
    recipe: dict
    checkpoint: str
    train_seconds: float
    history: list[dict] = field(default_factory=list)


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise UserError(f"cannot read checkpoint {path} ({type(err).__name__}); "
                        "delete it or train again") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a search.train checkpoint")
    return state


def to_channels_last(model: nn.Module) -> nn.Module:
    """NHWC: depthwise-conv backward is several times faster on CPU.

    torch 2.13's oneDNN backward of a strided 1x1 conv in channels-last can corrupt the heap
    with more than one thread (see search/core/supernet.py, Nchw), so those convs stay NCHW.
    """
    model.to(memory_format=torch.channels_last)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1):
            m.weight.data = m.weight.data.contiguous()
            m.register_forward_pre_hook(lambda _, args: (args[0].contiguous(),))
    return model


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             criterion: nn.Module) -> tuple[float, float]:
    """(mean loss, top-1 in [0, 1]) over a whole loader."""
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += criterion(logits, y).item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
    return loss_sum / max(total, 1), correct / max(total, 1)


def train(arch: Architecture, data, recipe: Recipe, out: Path, *, resume: bool = False,
          device: torch.device = torch.device("cpu"), data_spec: str = DEFAULT_DATA,
          progress: bool = True, log=print) -> TrainResult:
    """Train `arch` on `data` with `recipe`, checkpointing into `out` every epoch."""
    recipe.check()
    run = TrainRun(out)
    ckpt_path = run.checkpoint
    torch.manual_seed(recipe.seed)
    model = FBNet(arch, dropout=recipe.dropout).to(device)
    if device.type == "cpu":
        to_channels_last(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.momentum > 0)
    history: list[EpochLog] = []
    start_epoch, train_seconds = 0, 0.0
    if ckpt_path.exists():
        if not resume:
            raise UserError(f"{out} already holds a training run; pass --resume to continue it "
                            "or choose another --out")
        state = load_checkpoint(ckpt_path)
        if state["arch"]["candidates"] != list(arch.candidates) or \
                state["arch"]["space"] != arch.space.to_dict():
            raise UserError(f"{ckpt_path} was trained for another architecture or space "
                            f"({state['arch']['name']}); use another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history = [EpochLog(**h) for h in state["history"]]
        start_epoch, train_seconds = state["epoch"], state["train_seconds"]
        log(f"resuming {out} after epoch {start_epoch}/{recipe.epochs}")
    elif resume:
        log(f"no checkpoint in {out}; starting from scratch")

    out.mkdir(parents=True, exist_ok=True)
    save_architecture(arch, run.arch)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    eval_criterion = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(recipe.seed)
    train_loader = DataLoader(data.train, batch_size=recipe.batch_size, shuffle=True,
                              drop_last=len(data.train) > recipe.batch_size, generator=g)
    val_loader = DataLoader(data.val, batch_size=max(recipe.batch_size, 128))
    steps = len(train_loader)
    if recipe.max_steps_per_epoch:
        steps = min(steps, recipe.max_steps_per_epoch)

    for epoch in range(start_epoch, recipe.epochs):
        g.manual_seed(recipe.seed * 100003 + epoch)  # same batch order whether resumed or not
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{recipe.epochs}", unit="batch",
                   leave=False, disable=not progress, file=sys.stderr)
        for step, (x, y) in enumerate(train_loader):
            if step >= steps:
                break
            lr = recipe.lr_at(epoch, step, steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
            logits = model(x)
            loss = criterion(logits, y)
            if not torch.isfinite(loss):
                raise UserError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; "
                                "lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", top1=f"{correct / seen:.3f}")
        bar.close()
        val_loss, val_top1 = evaluate(model, val_loader, device, eval_criterion)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        entry = EpochLog(epoch + 1, lr, loss_sum / max(seen, 1), correct / max(seen, 1),
                         val_loss, val_top1, seconds)
        history.append(entry)
        save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "arch": arch.to_dict(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
            "epoch": epoch + 1, "history": [asdict(h) for h in history],
            "recipe": asdict(recipe), "data": data_spec, "train_seconds": train_seconds})
        atomic_write_text(run.log_jsonl, "".join(json.dumps(asdict(h)) + "\n" for h in history))
        log(f"epoch {epoch + 1:>3}/{recipe.epochs}  lr {lr:.4f}  train loss {entry.train_loss:.3f} "
            f"top-1 {entry.train_top1:6.1%}  val loss {val_loss:.3f} top-1 {val_top1:6.1%}  "
            f"({seconds:.0f} s)")

    if not history:
        raise UserError(f"{out} holds no finished epoch; train with --epochs >= 1")
    best = max(history, key=lambda h: h.val_top1)
    result = TrainResult(
        arch=arch.to_dict(), arch_name=arch.name, data=data_spec, resolution=data.resolution,
        num_classes=data.num_classes, macs=arch.macs, params=arch.params,
        epochs_done=len(history), top1=history[-1].val_top1, best_top1=best.val_top1,
        best_epoch=best.epoch, recipe=asdict(recipe), checkpoint=str(ckpt_path),
        train_seconds=train_seconds, history=[asdict(h) for h in history])
    atomic_write_json(run.result, asdict(result))
    return result
