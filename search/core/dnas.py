"""The DNAS training loop: alternate weights and theta, checkpoint, log, run under torchrun.

The supernet weights w train with SGD (momentum, cosine lr) on CE over the weight split; after
the warm-up epochs, theta trains with Adam on the latency-aware loss (search/core/loss.py) over the
architecture split. Two ways to alternate them (`--alternate`):

- `step` (default): every weight step is followed by one theta step on the next batch of the
  architecture split, which is cycled as often as needed (DARTS-style). A short search thus
  takes as many theta steps as weight steps: 144 instead of 36 for the default digits search.
  Theta's gradient is mostly Gumbel and sampling noise while its latency gradient is
  systematic, so the latency signal grows with the step count: in the default run, 36 steps
  took theta's entropy from 2.197 (uniform) to 2.158 nats, 144 steps to 2.096.
- `epoch` (the paper): each epoch trains w on the whole weight split, then theta on the whole
  architecture split; right for long ImageNet schedules (thousands of theta steps).

After every epoch the loop writes a checkpoint and one log row; Ctrl-C writes a checkpoint at
the current step, so `--resume` loses nothing.

Distributed (torchrun, DDP-style): every rank holds the whole supernet and a 1/world shard of
each batch list. Gradients of w and theta are averaged with one all-reduce per step (unused
candidates contribute zeros), so theta and its Adam state stay identical on every rank. The
sampled-mode candidate set is drawn from a generator seeded by (seed, epoch, phase, step), the
same on every rank; per-example Gumbel draws use a per-rank generator. Per-example latencies
are averaged over the global batch like the CE.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fbnet.errors import UserError
from fbnet.io import atomic_write_json, atomic_write_text
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from search.core.objective import Objective
from search.core.convergence import assess
from search.core.supernet import DEFAULT_BOUNDARY, SuperNet, recalibrated_bn, temperature
from search.runs import SearchRun

CHECKPOINT_FORMAT = "fbnet-dnas-checkpoint/1"
PHASES = ("w", "theta")
# batches of the architecture split that re-estimate BatchNorm statistics for one architecture
BN_CALIBRATION_BATCHES = 8
ALTERNATES = ("step", "epoch")
# how weight steps pick the residual layers' paths: from P_theta (the paper), or uniformly so
# that a candidate theta disfavours early keeps training (SPOS-style; docs/search.md, "Skips")
WEIGHT_SAMPLINGS = ("theta", "uniform")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    warmup_epochs: int = 1
    batch_size: int = 32
    mode: str = "sampled"
    paths: int = 2
    boundary: str = DEFAULT_BOUNDARY
    alternate: str = "step"
    weight_sampling: str = "theta"
    w_lr: float = 0.1
    w_momentum: float = 0.9
    w_weight_decay: float = 1e-4
    # 30x the paper's 0.01: the default search takes 720 theta steps, not tens of thousands
    theta_lr: float = 0.3
    theta_weight_decay: float = 5e-4
    tau0: float = 5.0
    # annealed per theta step, exponentially from tau0 to tau_final over the search (the
    # paper's per-epoch exp(-0.045) over 90 epochs is the same curve, ending at 0.087)
    tau_final: float = 1.0
    seed: int = 0
    workers: int = 0
    threads: int = 1
    # validation images scored after every epoch (a fixed subset; 0 = all of them)
    eval_images: int = 2000

    def check(self) -> None:
        if self.alternate not in ALTERNATES:
            raise UserError(f"unknown --alternate {self.alternate!r}; use one of "
                            f"{', '.join(ALTERNATES)}")
        if self.weight_sampling not in WEIGHT_SAMPLINGS:
            raise UserError(f"unknown --weight-sampling {self.weight_sampling!r}; use one of "
                            f"{', '.join(WEIGHT_SAMPLINGS)}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"--warmup-epochs must be in 0..{self.epochs - 1} (fewer than "
                            f"--epochs {self.epochs}) so theta trains at least one epoch")
        if self.threads < 1:
            raise UserError(f"--threads must be at least 1, got {self.threads}")
        if self.batch_size < 2:
            raise UserError(f"--batch-size must be at least 2 (BatchNorm), got {self.batch_size}")
        if not self.tau0 >= self.tau_final > 0:
            raise UserError(f"--tau0 and --tau-final must satisfy tau0 >= tau_final > 0, got "
                            f"{self.tau0} and {self.tau_final}")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Average .grad over ranks in one all-reduce. A parameter no rank used keeps grad None
        (so SGD leaves it alone, as on one process); one used on some ranks gets the mean."""
        if self.world == 1 or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        used = torch.tensor([float(p.grad is not None) for p in params], device=grads[0].device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [used])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g)).div_(self.world)
            offset += n
        for p, g, count in zip(params, grads, flat[offset:].tolist()):
            p.grad = g if count > 0 else None

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t


@dataclass
class PhaseStats:
    """Running sums over one phase of an epoch (summed over ranks at the end)."""

    loss: float = 0.0
    ce: float = 0.0
    latency_ms: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    def add(self, loss: torch.Tensor, ce: torch.Tensor, lat: torch.Tensor, logits, y) -> None:
        n = len(y)
        self.loss += float(loss) * n
        self.ce += float(ce.sum())
        self.latency_ms += float(lat.sum())
        self.correct += float((logits.argmax(-1) == y).sum())
        self.count += n

    def reduced(self, d: Dist, device) -> dict:
        t = d.all_reduce_sum(torch.tensor([self.loss, self.ce, self.latency_ms, self.correct,
                                           self.count], dtype=torch.float64, device=device))
        loss, ce, lat, correct, count = t.tolist()
        if count == 0:
            return {"loss": None, "ce": None, "latency_ms": None, "top1": None}
        return {"loss": loss / count, "ce": ce / count, "latency_ms": lat / count,
                "top1": correct / count}


@dataclass
class Position:
    """Where the loop is: resumes mid-epoch after Ctrl-C."""

    epoch: int = 0
    phase: str = "w"
    step: int = 0
    stats: dict = field(default_factory=lambda: {p: asdict(PhaseStats()) for p in PHASES})


def _seed(*parts) -> int:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


class Search:
    """One DNAS run: supernet, optimizers, data splits, checkpoint and log in `out`."""

    def __init__(self, space: SpaceConfig, objective: Objective,
                 train_cfg: TrainConfig, w_data: Dataset, theta_data: Dataset,
                 val_data: Dataset | None, out: Path, device: torch.device,
                 fingerprint: dict, d: Dist | None = None, progress: bool = True):
        train_cfg.check()
        # the supernet trains in `space`, which may be narrower than the objective's (a proxy)
        self.space, self.objective, self.cfg = space, objective, train_cfg
        self.w_data, self.theta_data, self.val_data = w_data, theta_data, val_data
        self.out, self.device, self.fingerprint = Path(out), device, fingerprint
        self.dist = d or Dist()
        self.progress = progress and self.dist.main
        if device.type == "cpu":
            torch.set_num_threads(train_cfg.threads)
        torch.manual_seed(train_cfg.seed)  # identical initial weights on every rank
        self.model = SuperNet(space, train_cfg.mode, train_cfg.paths, train_cfg.boundary).to(device)
        self.latency = objective.latency_model().to(device)
        self.w_params = self.model.weight_parameters()
        self.w_opt = torch.optim.SGD(self.w_params, lr=train_cfg.w_lr,
                                     momentum=train_cfg.w_momentum,
                                     weight_decay=train_cfg.w_weight_decay)
        # Decoupled weight decay (AdamW): theta's gradient is tiny (CE * alpha through a
        # straight-through mask, RMS ~5e-4 per step), so the paper's 5e-4 as an L2 term in the
        # gradient is as large as the gradient itself once theta moves, and pulls theta back to
        # uniform; measured, it stalled searches at a median P(argmax) of 0.35.
        self.theta_opt = torch.optim.AdamW([self.model.theta], lr=train_cfg.theta_lr,
                                           weight_decay=train_cfg.theta_weight_decay)
        self.pos = Position()
        self.pos_rng = torch.get_rng_state()
        self.history: list[dict] = []
        # theta's argmax per layer after every theta step: the convergence report's stability
        self.argmax_trace: list[list[int]] = []
        self.steps_per_epoch = {p: self._num_batches(ds) for p, ds in
                                (("w", w_data), ("theta", theta_data))}

    # --- data --------------------------------------------------------------------------------
    def _num_batches(self, ds: Dataset) -> int:
        per_rank = len(ds) // self.dist.world
        n = per_rank // self.cfg.batch_size
        if n == 0:
            raise UserError(f"a split of {len(ds)} examples is smaller than one batch of "
                            f"{self.cfg.batch_size} per rank; lower --batch-size or use more data")
        return n

    def _batches(self, phase: str, epoch: int, count: int | None = None) -> list[list[int]]:
        """This rank's first `count` batches (default: one pass) for one phase of one epoch,
        in the same order on resume. More than one pass cycles the split, reshuffled per pass."""
        ds = self.w_data if phase == "w" else self.theta_data
        bs, w, r = self.cfg.batch_size, self.dist.world, self.dist.rank
        n = self.steps_per_epoch[phase]
        count = n if count is None else count
        batches: list[list[int]] = []
        for pass_ in range(math.ceil(count / n)):
            # pass 0 keeps the order every figure in docs/search.md was measured with
            seed = (_seed(self.cfg.seed, epoch, phase, "order") if pass_ == 0 else
                    _seed(self.cfg.seed, epoch, phase, "order", pass_))
            order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
            # global batch i = order[i*bs*w : (i+1)*bs*w]; this rank takes its stride of it
            batches += [order[i * bs * w:(i + 1) * bs * w][r::w] for i in range(n)]
        return batches[:count]

    def _loader(self, ds: Dataset, batches: list[list[int]], seed: int = 0):
        # its own generator: creating the iterator must not consume the global RNG, or a
        # resumed run would augment differently from an uninterrupted one
        return DataLoader(ds, batch_sampler=batches, num_workers=self.cfg.workers,
                          generator=torch.Generator().manual_seed(seed))

    # --- steps -------------------------------------------------------------------------------
    @property
    def theta_steps_per_epoch(self) -> int:
        return self.steps_per_epoch["w" if self.cfg.alternate == "step" else "theta"]

    @property
    def total_theta_steps(self) -> int:
        return (self.cfg.epochs - self.cfg.warmup_epochs) * self.theta_steps_per_epoch

    def tau(self, epoch: int, step: int = 0) -> float:
        """The Gumbel temperature at theta step `step` of `epoch` (tau0 during the warm-up)."""
        done = (epoch - self.cfg.warmup_epochs) * self.theta_steps_per_epoch + step
        progress = min(max(done / self.total_theta_steps, 0.0), 1.0)
        return temperature(progress, self.cfg.tau0, self.cfg.tau_final)

    def _w_lr(self, epoch: int, step: int) -> float:
        total = self.cfg.epochs * self.steps_per_epoch["w"]
        t = epoch * self.steps_per_epoch["w"] + step
        return 0.5 * self.cfg.w_lr * (1 + math.cos(math.pi * t / total))

    def _step(self, phase: str, x, y, epoch: int, step: int, stats: PhaseStats,
              train: bool = True) -> None:
        cfg = self.cfg
        step_gen = _generator(self.device, _seed(cfg.seed, epoch, phase, step, "set"))
        ex_gen = _generator(self.device, _seed(cfg.seed, epoch, phase, step, self.dist.rank))
        theta_grad = phase == "theta" and train
        self.model.train()
        for p in self.w_params:  # theta steps need no weight gradients (saves backward work)
            p.requires_grad_(phase == "w")
        with torch.set_grad_enabled(train):
            masks = self.model.draw_masks(
                len(y), self.tau(epoch, step), ex_gen, step_gen, theta_grad,
                uniform_paths=phase == "w" and cfg.weight_sampling == "uniform")
            logits = self.model(x, masks)
            ce = F.cross_entropy(logits.float(), y, reduction="none")
            lat = self.latency(masks.weights)
            loss = self.objective.loss(ce, lat)
            # weights train on CE alone (see search/core/loss.py); theta on the latency-aware loss
            objective = loss if phase == "theta" else ce.mean()
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"loss became {float(loss)} at epoch {epoch} {phase} step {step}")
        if train:
            if phase == "w":
                for g in self.w_opt.param_groups:
                    g["lr"] = self._w_lr(epoch, step)
                self.w_opt.zero_grad()
                objective.backward()
                self.dist.average_gradients(self.w_params)
                self.w_opt.step()
            else:
                self.theta_opt.zero_grad()
                objective.backward()
                self.dist.average_gradients([self.model.theta])
                self.theta_opt.step()
                self.argmax_trace.append(self.model.theta.detach().argmax(-1).tolist())
        for p in self.w_params:
            p.requires_grad_(True)
        stats.add(loss.detach(), ce.detach(), lat.detach(), logits.detach(), y)

    def _run_phase(self, phase: str, epoch: int, train: bool) -> None:
        batches = self._batches(phase, epoch)
        stats = PhaseStats(**self.pos.stats[phase])
        start = self.pos.step if self.pos.phase == phase else 0
        ds = self.w_data if phase == "w" else self.theta_data
        label = {"w": "weights", "theta": "theta" if train else "arch split (eval)"}[phase]
        bar = tqdm(total=len(batches), initial=start, disable=not self.progress, leave=False,
                   desc=f"epoch {epoch + 1}/{self.cfg.epochs} {label}", unit="step")
        batches_iter = iter(self._loader(ds, batches[start:],
                                         _seed(self.cfg.seed, epoch, phase, start, "loader")))
        try:
            for step in range(start, len(batches)):
                # the RNG state before this batch's augmentation: an interrupted step replays
                # exactly after --resume
                self.pos_rng = torch.get_rng_state()
                x, y = next(batches_iter)
                self.pos.phase, self.pos.step = phase, step
                self._step(phase, x.to(self.device), y.to(self.device), epoch, step, stats, train)
                self.pos.step = step + 1
                self.pos.stats[phase] = asdict(stats)
                bar.update(1)
                if stats.count:
                    bar.set_postfix(loss=f"{stats.loss / stats.count:.3f}",
                                    lat=f"{stats.latency_ms / stats.count:.2f}ms",
                                    top1=f"{stats.correct / stats.count:.2f}")
            self.pos_rng = torch.get_rng_state()
        finally:
            bar.close()

    def _run_interleaved(self, epoch: int) -> None:
        """`--alternate step`: weight step i, then theta step i on the cycled arch split. The
        position (phase, step) names the next step to run, so a resume replays exactly."""
        n = self.steps_per_epoch["w"]
        start, first_phase = self.pos.step, self.pos.phase
        plan = {"w": self._batches("w", epoch), "theta": self._batches("theta", epoch, n)}
        data = {"w": self.w_data, "theta": self.theta_data}
        stats = {p: PhaseStats(**self.pos.stats[p]) for p in PHASES}
        iters = {}
        for phase in PHASES:
            offset = start + (phase == "w" and first_phase == "theta")
            iters[phase] = iter(self._loader(data[phase], plan[phase][offset:], _seed(
                self.cfg.seed, epoch, phase, offset, "loader")))
        bar = tqdm(total=n, initial=start, disable=not self.progress, leave=False,
                   desc=f"epoch {epoch + 1}/{self.cfg.epochs} weights+theta", unit="step")
        try:
            for step in range(start, n):
                for phase in PHASES:
                    if step == start and phase == "w" and first_phase == "theta":
                        continue  # resumed between this step's weight and theta halves
                    self.pos_rng = torch.get_rng_state()
                    x, y = next(iters[phase])
                    self.pos.phase, self.pos.step = phase, step
                    self._step(phase, x.to(self.device), y.to(self.device), epoch, step,
                               stats[phase])
                    self.pos.stats[phase] = asdict(stats[phase])
                    self.pos.phase, self.pos.step = (("theta", step) if phase == "w" else
                                                     ("w", step + 1))
                    self.pos_rng = torch.get_rng_state()
                bar.update(1)
                th = stats["theta"]
                bar.set_postfix(loss=f"{th.loss / th.count:.3f}",
                                lat=f"{th.latency_ms / th.count:.2f}ms",
                                top1=f"{th.correct / th.count:.2f}")
        finally:
            bar.close()

    # --- evaluation --------------------------------------------------------------------------
    def _eval_batches(self, ds: Dataset) -> list[list[int]]:
        """This rank's share of the first `eval_images` examples (a fixed subset), in batches."""
        n = len(ds) if not self.cfg.eval_images else min(len(ds), self.cfg.eval_images)
        idx = list(range(self.dist.rank, n, self.dist.world))
        size = 2 * self.cfg.batch_size
        return [idx[i:i + size] for i in range(0, len(idx), size)]

    @torch.no_grad()
    def _evaluate(self, ds: Dataset | None, logits_of, keep_mode: bool = False) -> float | None:
        if ds is None or len(ds) == 0:
            return None
        if not keep_mode:
            self.model.eval()
        correct = total = 0
        for i, (x, y) in enumerate(self._loader(ds, self._eval_batches(ds))):
            logits = logits_of(x.to(self.device), i)
            correct += int((logits.argmax(-1) == y.to(self.device)).sum())
            total += len(y)
        t = self.dist.all_reduce_sum(torch.tensor([correct, total], dtype=torch.float64,
                                                  device=self.device))
        return float(t[0] / t[1]) if t[1] else None

    def _calibration_images(self) -> list[torch.Tensor]:
        """BN_CALIBRATION_BATCHES fixed batches of the architecture split, read without
        consuming the global RNG (augmentation draws from it; a resumed run must replay)."""
        rng = torch.get_rng_state()
        try:
            n = min(len(self.theta_data), BN_CALIBRATION_BATCHES * self.cfg.batch_size)
            loader = self._loader(self.theta_data, [list(range(i, min(i + self.cfg.batch_size, n)))
                                                    for i in range(0, n, self.cfg.batch_size)])
            return [x.to(self.device) for x, _ in loader]
        finally:
            torch.set_rng_state(rng)

    def evaluate_arch(self, candidates: list[int], ds: Dataset | None) -> float | None:
        """Top-1 of one architecture alone with the supernet's weights: every layer, stage
        boundaries included, runs only its chosen candidate, with BatchNorm statistics
        re-estimated for it on a few architecture-split batches (supernet.recalibrated_bn)."""
        if ds is None or len(ds) == 0:
            return None
        with recalibrated_bn(self.model, candidates, self._calibration_images()):
            return self._evaluate(ds, lambda x, i: self.model.forward_arch(x, candidates),
                                  keep_mode=True)

    def evaluate_supernet(self, ds: Dataset | None, tau: float) -> float | None:
        """Top-1 of the supernet itself: per-example masks drawn from P_theta as in training."""
        def logits_of(x, i):
            gen = _generator(self.device, _seed(self.cfg.seed, "eval", i, self.dist.rank))
            step_gen = _generator(self.device, _seed(self.cfg.seed, "eval", i))
            return self.model(x, self.model.draw_masks(len(x), tau, gen, step_gen, False))
        return self._evaluate(ds, logits_of)

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> list[dict]:
        epochs = range(self.pos.epoch, self.cfg.epochs)
        bar = tqdm(total=self.cfg.epochs, initial=self.pos.epoch, disable=not self.progress,
                   desc="search", unit="epoch")
        try:
            for epoch in epochs:
                started = time.perf_counter()
                searching = epoch >= self.cfg.warmup_epochs
                if searching and self.cfg.alternate == "step":
                    self._run_interleaved(epoch)
                else:
                    if self.pos.phase == "w":
                        self._run_phase("w", epoch, train=True)
                        self.pos.phase, self.pos.step = "theta", 0
                    # during warm-up theta is not trained, but the arch split is still scored
                    self._run_phase("theta", epoch, train=searching)
                row = self._log_row(epoch, searching, time.perf_counter() - started)
                self.history.append(row)
                self.pos = Position(epoch=epoch + 1)
                self.pos_rng = torch.get_rng_state()
                self.save_checkpoint()
                self._write_log()
                bar.update(1)
                bar.set_postfix(lat=f"{row['argmax_latency_ms']:.2f}ms",
                                H=f"{row['theta_entropy']:.2f}",
                                p=f"{row['argmax_prob_median']:.2f}")
            self.check_theta_in_sync()
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise
        finally:
            bar.close()
        return self.history

    def check_theta_in_sync(self) -> None:
        """Every rank must end with the same theta; a mismatch is a bug, never silent."""
        if self.dist.world == 1:
            return
        theta = self.model.theta.detach().clone()
        gathered = [torch.empty_like(theta) for _ in range(self.dist.world)]
        dist.all_gather(gathered, theta)
        if any(not torch.equal(gathered[0], t) for t in gathered[1:]):
            raise RuntimeError("theta differs across ranks after the search")

    def _log_row(self, epoch: int, searching: bool, seconds: float) -> dict:
        w = PhaseStats(**self.pos.stats["w"]).reduced(self.dist, self.device)
        th = PhaseStats(**self.pos.stats["theta"]).reduced(self.dist, self.device)
        argmax = self.model.theta.detach().argmax(-1).tolist()
        end_tau = self.tau(epoch, self.theta_steps_per_epoch)
        conv = assess(self.model.theta, self.argmax_trace)
        return {
            "epoch": epoch + 1,
            "phase": "search" if searching else "warmup",
            "tau": end_tau,
            "w_lr": self._w_lr(epoch, self.steps_per_epoch["w"]),
            "loss": th["loss"] if searching else w["loss"],
            "ce": th["ce"] if searching else w["ce"],
            "expected_latency_ms": th["latency_ms"],
            "w_loss": w["loss"], "w_ce": w["ce"], "w_top1": w["top1"],
            "theta_loss": th["loss"], "theta_ce": th["ce"], "theta_top1": th["top1"],
            "val_top1_argmax": self.evaluate_arch(argmax, self.val_data),
            "val_top1_supernet": self.evaluate_supernet(self.val_data, end_tau),
            "theta_entropy": conv.entropy_nats,
            "argmax_prob_median": conv.median_argmax_prob,
            "argmax_prob_min": conv.min_argmax_prob,
            "argmax_changed_layers": conv.layers_changed_last,
            "theta_steps": conv.theta_steps,
            "converged": conv.converged,
            "argmax_arch": [CANDIDATE_NAMES[k] for k in argmax],
            "argmax_latency_ms": self.objective.price_ms([CANDIDATE_NAMES[k] for k in argmax]),
            "seconds": seconds,
            "probs": [[round(p, 5) for p in row] for row in self.model.probabilities().tolist()],
        }

    # --- files -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return SearchRun(self.out).checkpoint

    def save_checkpoint(self) -> None:
        if not self.dist.main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "position": asdict(self.pos),
            "model": self.model.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "theta_opt": self.theta_opt.state_dict(),
            "history": self.history,
            "argmax_trace": self.argmax_trace,
            "torch_rng": self.pos_rng,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self, path: Path | None = None) -> None:
        path = Path(path or self.checkpoint_path)
        if not path.is_file():
            raise UserError(f"no checkpoint at {path} to resume from; drop --resume to start "
                            "a new search")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # any unreadable file: pickle, zip, truncation errors
            raise UserError(f"{path} is not a readable search checkpoint ({type(err).__name__}); "
                            "delete it or pick another --out") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint; it comes from "
                            "another tool; pick another --out")
        theirs = state.get("fingerprint", {})
        diff = sorted(k for k in set(theirs) | set(self.fingerprint)
                      if theirs.get(k) != self.fingerprint.get(k))
        if diff:
            shown = ", ".join(f"{k}: {theirs.get(k)!r} -> {self.fingerprint.get(k)!r}"
                              for k in diff[:3])
            raise UserError(f"{path} was written by a different search ({shown}); resume with "
                            "the same settings or pick another --out")
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.theta_opt.load_state_dict(state["theta_opt"])
        self.pos = Position(**state["position"])
        self.history = list(state["history"])
        self.argmax_trace = [list(row) for row in state.get("argmax_trace", [])]
        torch.set_rng_state(state["torch_rng"].cpu())

    def _write_log(self) -> None:
        if not self.dist.main:
            return
        atomic_write_text(SearchRun(self.out).log_jsonl,
                          "".join(json.dumps(row) + "\n" for row in self.history))
        cols = [k for k in self.history[0] if k not in ("probs", "argmax_arch")] + ["argmax_arch"]
        lines = [",".join(cols)]
        for row in self.history:
            cells = []
            for k in cols:
                v = row[k]
                cells.append(" ".join(v) if isinstance(v, list) else "" if v is None else
                             f"{v:.6g}" if isinstance(v, float) else str(v))
            lines.append(",".join(cells))
        atomic_write_text(SearchRun(self.out).log_csv, "\n".join(lines) + "\n")


@dataclass
class TrainedSupernet:
    """A finished search's supernet, read back from its checkpoint."""

    model: SuperNet
    space: SpaceConfig  # the space the search priced (its architectures)
    proxy_space: SpaceConfig  # the space the supernet trained at
    fingerprint: dict

    @torch.no_grad()
    def top1(self, candidates: list[int], ds: Dataset, calibration: Dataset,
             batch_size: int = 128) -> float:
        """Val top-1 of one architecture alone with the supernet's weights, BatchNorm
        statistics re-estimated for it on the first batches of `calibration`."""
        with torch.random.fork_rng():  # augmentation draws: the same batches on every call
            torch.manual_seed(0)
            images = [x for (x, _), _ in zip(DataLoader(calibration, batch_size=32),
                                             range(BN_CALIBRATION_BATCHES))]
        correct = total = 0
        with recalibrated_bn(self.model, candidates, images):
            for x, y in DataLoader(ds, batch_size=batch_size):
                logits = self.model.forward_arch(x, candidates)
                correct += int((logits.argmax(-1) == y).sum())
                total += len(y)
        return correct / max(total, 1)


def load_trained_supernet(path: Path, device: torch.device = torch.device("cpu")
                          ) -> TrainedSupernet:
    """The supernet of a search checkpoint (search.run's --out/checkpoint.pt)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no search checkpoint at {path}; give the checkpoint.pt of a "
                        "finished search.run")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # any unreadable file: pickle, zip, truncation errors
        raise UserError(f"{path} is not a readable search checkpoint ({type(err).__name__})"
                        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (a search.run "
                        "checkpoint.pt)")
    fp = state["fingerprint"]
    if "space" not in fp or "mode" not in fp:
        raise UserError(f"{path} does not record its search space; re-run the search")
    space = SpaceConfig.from_dict(fp["space"])
    proxy = SpaceConfig.from_dict(fp.get("proxy_space", fp["space"]))
    model = SuperNet(proxy, fp["mode"], fp.get("paths", 2), fp.get("boundary", DEFAULT_BOUNDARY))
    model.load_state_dict(state["model"])
    return TrainedSupernet(model.to(device), space, proxy, fp)


def latency_only_search(model: SuperNet, objective: Objective, steps: int = 200,
                        batch: int = 16, lr: float = 0.05, tau: float = 1.0,
                        seed: int = 0) -> list[int]:
    """Sanity check (a): weights frozen, only the latency term trains theta (Adam). Returns the
    argmax candidate index per layer, which must be each layer's LUT-cheapest candidate."""
    opt = torch.optim.Adam([model.theta], lr=lr)
    latency = objective.latency_model()
    for step in range(steps):
        gen = torch.Generator().manual_seed(_seed(seed, step, "ex"))
        step_gen = torch.Generator().manual_seed(_seed(seed, step, "set"))
        masks = model.draw_masks(batch, tau, gen, step_gen, theta_grad=True)
        loss = objective.latency_loss(latency(masks.weights))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.theta.detach().argmax(-1).tolist()


def sample_architectures(theta: torch.Tensor, k: int, seed: int) -> list[list[int]]:
    """K architectures drawn from P_theta (layer-wise independent categorical draws)."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(theta.detach().float().cpu(), dim=-1)
    return [torch.multinomial(probs, 1, generator=g).squeeze(-1).tolist() for _ in range(k)]


def write_theta(path: Path, model: SuperNet, tau: float) -> None:
    probs = model.probabilities().tolist()
    atomic_write_json(path, {
        "candidates": list(CANDIDATE_NAMES),
        "tau": tau,
        "layers": [{"layer": f"L{i + 1}", "theta": row, "probs": p}
                   for i, (row, p) in enumerate(zip(model.theta.detach().cpu().tolist(), probs))],
    })
