"""A short stand-alone training recipe that ranks found networks on a CPU.

The comparisons of searched networks (search vs random, one device's network vs another's) need
many networks trained with one recipe and several seeds. The full recipe (search.train) costs
minutes per epoch on a CPU, so these comparisons train each network briefly on a fixed subset of
the data, at a width multiplier (default 0.5, the search's proxy width), and score it on a fixed
subset of the val split. That ranks networks of one space against each other; it is not their
final accuracy (train the winner with search.train for that).

Each training writes into its own folder and is reused when its result is there, so a long
comparison that is interrupted continues where it stopped. Trainings run side by side in
worker processes (`jobs`), one thread each.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import Subset
from tqdm import tqdm

from fbnet.arch import Architecture, at_resolution
from fbnet.errors import UserError
from fbnet.io import atomic_write_json
from search.runs import SearchRun, TrainRun
from search.data import DEFAULT_DATA, DataBundle, load_data
from search.networks.training import Recipe, train

ROOT = Path(__file__).resolve().parents[2]  # the repository: search.run runs from there


def cached_search(out: Path, args: list[str]) -> dict:
    """`python -m search.run ... --out out` (resumed from its checkpoint if one is there), or
    the result.json a finished run already left in `out`."""
    run = SearchRun(out)
    result_path = run.result
    if not result_path.is_file():
        cmd = [sys.executable, "-m", "search.run", *args, "--out", str(out), "--no-progress",
               *(["--resume"] if run.checkpoint.is_file() else [])]
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"search.run {' '.join(args)} failed: {last}")
    return json.loads(result_path.read_text())


@dataclass(frozen=True)
class StandaloneRecipe:
    data: str = DEFAULT_DATA
    epochs: int = 2
    train_images: int = 6000
    val_images: int = 3000
    width: float = 0.5

    def check(self) -> None:
        if self.epochs < 1 or self.train_images < 1 or self.val_images < 1:
            raise UserError("the stand-alone recipe needs epochs, train and val images >= 1")
        if not 0 < self.width <= 4:
            raise UserError(f"stand-alone width must be in (0, 4], got {self.width}")

    def describe(self) -> str:
        return (f"{self.epochs} epochs on {self.train_images} {self.data} images at width "
                f"x{self.width:g}, top-1 on {self.val_images} val images")


class StandaloneTrainer:
    """Trains architectures with one StandaloneRecipe, caching each result under `root`."""

    def __init__(self, recipe: StandaloneRecipe, root: Path, threads: int = 1):
        recipe.check()
        self.recipe, self.root = recipe, Path(root)
        # one thread, as search.run: these networks are small, and on a busy machine OpenMP
        # threads waiting for a core make every step several times slower
        self.threads = threads
        self._data: DataBundle | None = None

    @property
    def data(self) -> DataBundle:
        if self._data is None:
            bundle = load_data(self.recipe.data)
            g = torch.Generator().manual_seed(0)  # one fixed subset for every network
            train_idx = torch.randperm(len(bundle.train), generator=g)
            self._data = replace(
                bundle, train=Subset(bundle.train, train_idx[:self.recipe.train_images].tolist()),
                val=Subset(bundle.val, list(range(min(self.recipe.val_images, len(bundle.val))))))
        return self._data

    def top1(self, arch: Architecture, name: str, seed: int) -> float:
        """Val top-1 of `arch` trained with the recipe and `seed` (cached in root/name/seedS)."""
        out = self.root / name / f"seed{seed}"
        result_path = TrainRun(out).result
        if result_path.is_file():
            cached = json.loads(result_path.read_text())
            if cached.get("standalone_recipe") == asdict(self.recipe):
                return float(cached["top1"])
            raise UserError(f"{out} was trained with another recipe; use another --out")
        recipe = Recipe(epochs=self.recipe.epochs, seed=seed)
        torch.set_num_threads(self.threads)
        result = train(at_resolution(arch, width=self.recipe.width), self.data, recipe, out,
                       resume=True, data_spec=self.recipe.data, progress=False, log=lambda *_: None)
        payload = json.loads(result_path.read_text())
        payload["standalone_recipe"] = asdict(self.recipe)
        atomic_write_json(result_path, payload)
        return result.top1

    def top1_many(self, trainings: list[tuple[Architecture, str, int]], jobs: int = 1,
                  progress: bool = False) -> list[float]:
        """top1(arch, name, seed) for each training, in order, up to `jobs` at a time in worker
        processes; a (name, seed) given twice is trained once."""
        if jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {jobs}")
        unique = {(name, seed): arch for arch, name, seed in trainings}
        bar = tqdm(total=len(unique), desc="training", unit="training", disable=not progress)
        done: dict[tuple[str, int], float] = {}
        if jobs == 1:
            for (name, seed), arch in unique.items():
                done[(name, seed)] = self.top1(arch, name, seed)
                bar.update()
        else:
            # spawn, not fork: a forked torch with its thread pools started can deadlock
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_start_worker,
                                     initargs=(self.recipe, self.root, self.threads)) as pool:
                futures = {pool.submit(_worker_top1, arch, name, seed): (name, seed)
                           for (name, seed), arch in unique.items()}
                for future in as_completed(futures):
                    done[futures[future]] = future.result()
                    bar.update()
        bar.close()
        return [done[(name, seed)] for _, name, seed in trainings]


_worker_trainer: StandaloneTrainer | None = None  # one per worker process: loads the data once


def _start_worker(recipe: StandaloneRecipe, root: Path, threads: int) -> None:
    global _worker_trainer
    _worker_trainer = StandaloneTrainer(recipe, root, threads)


def _worker_top1(arch: Architecture, name: str, seed: int) -> float:
    return _worker_trainer.top1(arch, name, seed)
