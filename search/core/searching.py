"""One whole search, as a library: the data, the LUT and its sibling, the objective, the
supernet, and the run folder's files (search.runs.SearchRun). `python -m search.run` is its
command line; benchmarks and protocols call `run_search` with typed settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import Subset

from fbnet.arch import Architecture, save_architecture, to_arch_string
from fbnet.errors import UserError
from fbnet.io import atomic_write_json
from fbnet.lut import Lut
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from search.core.budget import Budget
from search.core.convergence import Convergence, assess
from search.core.dnas import Dist, Search, TrainConfig, sample_architectures, write_theta
from search.core.loss import LossConfig
from search.core.luts import resolve_lut
from search.core.objective import Objective
from search.core.plots import plot_curves, plot_probabilities
from search.data import DEFAULT_DATA, load_data, split_train
from search.runs import SearchRun

# The default search trains a half-width supernet on 9600 Fashion-MNIST images: it converges
# in about 10 minutes on 2 CPU cores (docs/search.md, "Convergence").
DEFAULT_PROXY_WIDTH = 0.5
DEFAULT_TRAIN_IMAGES = 9600


# --- LUT / space resolution ------------------------------------------------------------------

def build_space(lut: Lut, resolution: int, num_classes: int, width: float) -> SpaceConfig:
    """The LUT's own macro-architecture at the data's resolution and class count."""
    if lut.space:
        s = lut.space
        return SpaceConfig.create(resolution, width=width, stem_channels=s.stem_channels,
                                  stage_widths=s.stage_widths, stage_depths=s.stage_depths,
                                  head_channels=s.head_channels, num_classes=num_classes,
                                  in_channels=s.in_channels)
    return SpaceConfig.create(resolution, width=width, num_classes=num_classes)


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--torch-device {spec}: no CUDA GPU is visible to torch here; use "
                            "--torch-device cpu")
        if spec == "cuda" and "LOCAL_RANK" in os.environ:
            spec = f"cuda:{os.environ['LOCAL_RANK']}"
    elif spec != "cpu":
        raise UserError(f"unknown --torch-device {spec!r}; use cpu, cuda, cuda:N or auto")
    return torch.device(spec)


def entries_digest(lut: Lut) -> str:
    text = json.dumps({k: e.latency_ms for k, e in sorted(lut.entries.items())})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SearchSettings:
    """What one search.run call searches, on which data, and where it writes."""

    lut: Path
    out: Path
    data: str = DEFAULT_DATA
    resolution: int | None = None
    width: float = 1.0
    proxy_width: float = DEFAULT_PROXY_WIDTH
    train_images: int = DEFAULT_TRAIN_IMAGES
    arch_fraction: float = 0.2
    samples: int = 6
    resume: bool = False
    progress: bool = True

    def check(self) -> None:
        if not 0 < self.arch_fraction < 1:
            raise UserError(f"--arch-fraction must be between 0 and 1, got {self.arch_fraction}")
        if self.train_images < 0 or self.samples < 0:
            raise UserError("--train-images and --samples must be >= 0")
        if not 0 < self.proxy_width <= 1:
            raise UserError(f"--proxy-width must be in (0, 1], got {self.proxy_width}")


@dataclass
class SearchResult:
    arch: Architecture
    latency_ms: float
    lut: Lut  # the LUT the search priced blocks with (a sibling of the one asked for, maybe)
    lut_note: str | None
    data: str
    convergence: Convergence
    val_top1_argmax: float | None
    val_top1_supernet: float | None
    samples: list[dict]
    epochs: int
    seconds: float
    out: Path
    probs: list[list[float]]
    budget: str | None = None  # the budget searched under, described (Budget.describe)

    def to_dict(self) -> dict:
        return {"arch": self.arch.to_dict(), "arch_string": to_arch_string(self.arch),
                "latency_ms": self.latency_ms, "macs": self.arch.macs,
                "params": self.arch.params, "lut": str(self.lut.path), "lut_title": self.lut.title,
                "lut_note": self.lut_note, "data": self.data,
                "convergence": self.convergence.to_dict(),
                "val_top1_argmax": self.val_top1_argmax,
                "val_top1_supernet": self.val_top1_supernet,
                "budget": self.budget,
                "skips": sum(c == "skip" for c in self.arch.candidates),
                "samples": self.samples, "epochs": self.epochs, "seconds": self.seconds,
                "out": str(self.out),
                "files": {name: str(self.out / name) for name in SearchRun.FILES}}


def check_out_dir(out: Path, resume: bool) -> None:
    """A new search never overwrites another run's files; --resume needs a checkpoint."""
    if resume:
        return
    found = SearchRun(out).existing()
    if found:
        raise UserError(f"{out} already holds a search's files ({', '.join(found[:3])}); pass "
                        "--resume to continue it (needs its checkpoint.pt) or choose another --out")


def run_search(settings: SearchSettings, given_lut: Lut, loss_cfg: LossConfig,
               train_cfg: TrainConfig, device: torch.device, d: Dist, budget: Budget = Budget(),
               default_budget: bool = False, normalize_latency: bool = False,
               announce=print,
               prepare_lut: Callable[[Lut], tuple[Lut, str]] | None = None
               ) -> SearchResult | None:
    """Search `given_lut` (settings.lut, parsed; or its sibling at the data's resolution),
    write the run's files to settings.out, and return the result (None on ranks other than the
    main one). A budget turns into --loss target's T on the resolved LUT; the default budget
    (MobileNetV2's price) gives way to the fbnet loss on a LUT that does not price MobileNetV2.
    `announce` prints the one-line plan and notes (None: silent). `prepare_lut(lut) -> (lut,
    note)` replaces the resolved LUT before pricing (search.run --reanchor)."""
    bundle = load_data(settings.data, resolution=settings.resolution, seed=train_cfg.seed)
    lut, note = resolve_lut(given_lut, bundle.resolution)
    if prepare_lut is not None:
        lut, prepared = prepare_lut(lut)
        note = " ".join(filter(None, [note, prepared]))
    space = build_space(lut, bundle.resolution, bundle.num_classes, settings.width)
    objective = Objective.build(lut, space, loss_cfg, budget, default_budget=default_budget,
                                normalize_latency=normalize_latency)
    note = " ".join(filter(None, [note, objective.note]))
    # the supernet may train narrower than the space it prices (a proxy for the accuracy side)
    proxy = build_space(lut, bundle.resolution, bundle.num_classes,
                        settings.width * settings.proxy_width)

    train = bundle.train
    if settings.train_images and len(train) > settings.train_images:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(train_cfg.seed))
        train = Subset(train, keep[:settings.train_images].tolist())
    w_data, theta_data = split_train(train, 1 - settings.arch_fraction, train_cfg.seed)

    fingerprint = {"space": space.to_dict(), "proxy_space": proxy.to_dict(),
                   "lut": entries_digest(lut), "data": bundle.name, "train_images": len(train),
                   "arch_fraction": settings.arch_fraction,
                   "loss": objective.loss_config.describe(),
                   "world": d.world, **{k: v for k, v in asdict(train_cfg).items()
                                        if k not in ("workers", "threads", "epochs")}}
    out = settings.out
    search = Search(proxy, objective, train_cfg, w_data, theta_data, bundle.val, out, device,
                    fingerprint, d, progress=settings.progress)
    if settings.resume:
        search.load_checkpoint(SearchRun(out).checkpoint)
    if d.main and announce:
        if note:
            announce(f"note: {note}")
        mode = (f"sampled mode ({train_cfg.boundary} boundaries)" if train_cfg.mode == "sampled"
                else f"{train_cfg.mode} mode")
        proxy_text = (f"; supernet at width x{settings.proxy_width:g} (proxy: "
                      f"{'/'.join(map(str, proxy.stage_widths))} channels), priced at full width"
                      if settings.proxy_width != 1 else "")
        announce(f"search: {bundle.describe()}; {space.layout} layout, {space.num_layers} layers"
                 f"{proxy_text}; {len(w_data)} images train w, {len(theta_data)} train theta; "
                 f"{search.total_theta_steps} theta steps; {mode}; loss {objective.describe()}"
                 + f"; LUT {lut.path} ({lut.title}); device {device}"
                 + (f" x {d.world} ranks" if d.world > 1 else ""))
    started = time.perf_counter()
    history = search.run()
    seconds = time.perf_counter() - started
    if not d.main:
        return None

    model = search.model
    stem = Path(lut.path).stem
    argmax = Architecture(f"dnas_{stem}", space, model.argmax_candidates())
    out.mkdir(parents=True, exist_ok=True)
    run = SearchRun(out)
    save_architecture(argmax, run.arch)
    samples = []
    for k, idx in enumerate(sample_architectures(model.theta, settings.samples, train_cfg.seed)):
        arch = Architecture(f"dnas_{stem}_sample{k}", space,
                            tuple(CANDIDATE_NAMES[i] for i in idx))
        samples.append({"architecture": arch.to_dict(),
                        "latency_ms": objective.price_ms(arch.candidates),
                        "macs": arch.macs, "params": arch.params,
                        "arch_string": to_arch_string(arch)})
    atomic_write_json(run.samples, {"lut": str(lut.path), "samples": samples})
    write_theta(run.theta, model, history[-1]["tau"])
    title = f"({lut.title}, {bundle.name})"
    plot_probabilities(history, run.probs_plot, title)
    plot_curves(history, run.curves_plot, title)
    last = history[-1]
    result = SearchResult(
        arch=argmax, latency_ms=objective.price_ms(argmax.candidates), lut=lut, lut_note=note,
        data=bundle.name, convergence=assess(model.theta, search.argmax_trace),
        val_top1_argmax=last["val_top1_argmax"], val_top1_supernet=last["val_top1_supernet"],
        samples=samples, epochs=len(history), seconds=seconds, out=out,
        probs=model.probabilities().tolist(),
        budget=objective.budget.describe() if objective.budget.given else None)
    atomic_write_json(run.result, result.to_dict())
    return result
