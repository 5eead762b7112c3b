"""Export workloads and whole networks to runnable programs, through a content-addressed cache.

One `ExportJob` -> one folder `.cache/artifacts/<id>/` holding the program (`program.pte`, or
`program.ptl` for TorchScript-lite), its ETRecord (`etrecord.bin`, ExecuTorch only) and
`meta.json` with the program's sha256. Programs are lowered by fbnet.lowering's recipe for the
job's dtype, backend and runtime, the same one search.export ships networks with. The id hashes
everything that changes the bytes: the workload key (or the architecture JSON), dtype, backend,
runtime, the recipe, torch/executorch versions and `EXPORT_VERSION`. A re-run exports nothing
it already has; an artifact whose bytes no longer match its sha256 is deleted and rebuilt.
Exports run in a pool of worker processes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch

from fbnet.arch import Architecture
from fbnet.blocks import build_workload_module
from fbnet.errors import UserError
from fbnet.lowering import LoweringRecipe, lower, recipe_for
from fbnet.model import FBNet
from fbnet.workloads import parse_key
from profiler.backends.base import Program, sha256_file
from profiler.protocol import InputSpec

# Bump when the export code changes what it writes: every cached artifact is then rebuilt.
EXPORT_VERSION = "2"
DEFAULT_CACHE = Path(".cache/artifacts")
_CALIBRATION_BATCHES = 8


def runtime_versions() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "none"

    return {"torch": version("torch"), "executorch": version("executorch")}


@dataclass(frozen=True)
class ExportJob:
    """What to export: a workload by key, or a whole network (`arch` = Architecture.to_dict())."""

    key: str  # block key, or "arch:<name>" for a network
    input_shape: tuple[int, ...]
    dtype: str = "fp32"
    backend: str = "xnnpack"
    runtime: str = "executorch"
    arch: str | None = None  # JSON text of the architecture (hashable, stable)

    @property
    def recipe(self) -> LoweringRecipe:
        return recipe_for(self.dtype, self.backend, self.runtime)

    @property
    def suffix(self) -> str:
        return self.recipe.suffix

    def artifact_id(self) -> str:
        ident = {"job": asdict(self), "recipe": asdict(self.recipe),
                 "versions": runtime_versions(), "export": EXPORT_VERSION}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]

    def build_module(self):
        """The module this job exports, before lowering: the workload or network in eval mode,
        with the same seeded weights every time (identical bytes, identical cache hits)."""
        torch.manual_seed(0)
        if self.arch is not None:
            return FBNet(Architecture.from_dict(json.loads(self.arch))).eval()
        return build_workload_module(parse_key(self.key)).eval()


@dataclass
class Artifact:
    job: ExportJob
    folder: Path
    program: Path
    etrecord: Path | None
    sha256: str
    export_s: float  # wall time of the export that created it
    cached: bool = False  # found in the cache (not exported by this run)

    def to_program(self) -> Program:
        return Program(self.job.key, self.program, [InputSpec(list(self.job.input_shape))],
                       self.sha256)


@dataclass
class ExportStats:
    exported: int = 0
    cached: int = 0
    rebuilt_corrupt: int = 0
    wall_s: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)


class ArtifactCache:
    def __init__(self, root: Path = DEFAULT_CACHE):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the artifact cache {self.root}: {err.strerror}; "
                            "pass --cache DIR somewhere writable") from None

    def folder(self, job: ExportJob) -> Path:
        return self.root / job.artifact_id()

    def lookup(self, job: ExportJob, need_etrecord: bool = False) -> tuple[Artifact | None, bool]:
        """(artifact, was_corrupt): a verified artifact, or None after removing a bad one (or
        when it has no ETRecord and one is needed: the program is the same, so it is re-exported
        with one)."""
        folder = self.folder(job)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            return None, folder.exists()
        try:
            meta = json.loads(meta_path.read_text())
            program = folder / meta["program"]
            ok = program.is_file() and sha256_file(program) == meta["sha256"]
            etrecord = folder / meta["etrecord"] if meta.get("etrecord") else None
            ok = ok and (etrecord is None or etrecord.is_file())
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            shutil.rmtree(folder, ignore_errors=True)
            return None, True
        if need_etrecord and etrecord is None and job.runtime == "executorch":
            return None, False
        return Artifact(job, folder, program, etrecord, meta["sha256"],
                        float(meta.get("export_s", 0.0)), cached=True), False

    def store(self, job: ExportJob, staging: Path, meta: dict) -> Artifact:
        """Move a finished export from `staging` into place (a rename: readers never see half)."""
        folder = self.folder(job)
        stored, _ = self.lookup(job, need_etrecord=bool(meta.get("etrecord")))
        if stored is not None and stored.sha256 == meta["sha256"]:
            # another build sharing this cache stored the same program first: keep theirs,
            # which that build may be reading now
            shutil.rmtree(staging, ignore_errors=True)
            return stored
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        etrecord = folder / meta["etrecord"] if meta.get("etrecord") else None
        return Artifact(job, folder, folder / meta["program"], etrecord, meta["sha256"],
                        meta["export_s"])


# --- the export itself (runs in worker processes) ----------------------------------------------
def _random_inputs(shape: tuple[int, ...], count: int):
    """Seeded standard-normal inputs: a block has no data to calibrate int8 on."""
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=gen) for _ in range(count)]


def export_to_folder(job: ExportJob, folder: str, etrecord: bool = True) -> dict:
    """Export `job` into `folder`; returns the meta dict (also written as meta.json).

    etrecord=False skips the ETRecord: it does not change the program's bytes and costs ~25% of
    a whole network's export, and networks timed without ETDump (calibration, validation) never
    read it."""
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    folder_path = Path(folder)
    recipe = job.recipe
    calibration = _random_inputs(job.input_shape, _CALIBRATION_BATCHES) \
        if recipe.dtype == "int8" else []
    lowered = lower(job.build_module(), recipe, _random_inputs(job.input_shape, 1)[0],
                    calibration=calibration, etrecord=etrecord and recipe.runtime == "executorch")
    program = folder_path / f"program{recipe.suffix}"
    program.write_bytes(lowered.program)
    etrecord_path = None
    if lowered.etrecord is not None:
        etrecord_path = folder_path / "etrecord.bin"
        lowered.save_etrecord(etrecord_path)
    meta = {"job": asdict(job), "recipe": recipe.name, "program": program.name,
            "etrecord": etrecord_path.name if etrecord_path else None,
            "sha256": sha256_file(program), "export_s": time.perf_counter() - start,
            "versions": runtime_versions(), "export_version": EXPORT_VERSION}
    (folder_path / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _worker_init() -> None:
    torch.set_num_threads(1)  # 2 workers on a shared 2-core machine: no oversubscription


def export_all(jobs: list[ExportJob], cache: ArtifactCache, *, workers: int = 2,
               on_done: Callable[[Artifact], None] | None = None,
               etrecord: bool | Callable[[ExportJob], bool] = True
               ) -> tuple[dict[str, Artifact], ExportStats]:
    """Every job's artifact by key: cached ones verified, the rest exported in `workers`
    processes, in the order given. A job that fails to export is reported in stats.failures
    (the others go on). etrecord: whether the artifacts need an ETRecord (see
    export_to_folder), for all jobs or per job."""
    needs_etrecord = etrecord if callable(etrecord) else (lambda _job: etrecord)
    stats = ExportStats()
    start = time.perf_counter()
    found: dict[str, Artifact] = {}
    todo: list[ExportJob] = []
    for job in jobs:
        artifact, corrupt = cache.lookup(job, need_etrecord=needs_etrecord(job))
        stats.rebuilt_corrupt += corrupt
        if artifact is None:
            todo.append(job)
        else:
            found[job.key] = artifact
            stats.cached += 1
            if on_done:
                on_done(artifact)
    if todo:
        staging_root = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache.root))

        def finished(job: ExportJob, meta: dict | str) -> None:
            # stored as soon as it is done: Ctrl-C keeps every finished export
            if isinstance(meta, dict):
                found[job.key] = cache.store(job, staging_root / job.artifact_id(), meta)
                stats.exported += 1
                if on_done:
                    on_done(found[job.key])
            else:
                stats.failures[job.key] = meta

        try:
            for job in todo:
                (staging_root / job.artifact_id()).mkdir()
            _run_exports(todo, staging_root, workers, finished, needs_etrecord)
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
    stats.wall_s = time.perf_counter() - start
    return found, stats


def _run_exports(todo: list[ExportJob], staging_root: Path, workers: int,
                 finished: Callable[[ExportJob, dict | str], None],
                 etrecord: Callable[[ExportJob], bool]) -> None:
    if workers <= 1 or len(todo) == 1:
        for job in todo:
            try:
                meta = export_to_folder(job, str(staging_root / job.artifact_id()),
                                        etrecord(job))
            except Exception as err:  # noqa: BLE001 - reported per job, others continue
                meta = f"{type(err).__name__}: {err}"
            finished(job, meta)
        return
    # spawn: the parent may hold runtime threads (forking those can deadlock)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                               mp_context=mp.get_context("spawn"), initializer=_worker_init)
    try:
        futures = {pool.submit(export_to_folder, job, str(staging_root / job.artifact_id()),
                               etrecord(job)): job for job in todo}
        for fut in as_completed(futures):
            try:
                meta = fut.result()
            except Exception as err:  # noqa: BLE001
                meta = f"{type(err).__name__}: {err}"
            finished(futures[fut], meta)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
