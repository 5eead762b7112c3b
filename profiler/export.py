"""Export workloads and whole networks to runnable programs, through a content-addressed cache.

One `ExportJob` -> one folder `.cache/artifacts/<id>/` holding the program (`program.pte`, or
`program.ptl` for TorchScript-lite), its ETRecord (`etrecord.bin`, ExecuTorch only) and
`meta.json` with the program's sha256. The id hashes everything that changes the bytes: the
workload key (or the architecture JSON), dtype, backend, runtime, torch/executorch versions and
`EXPORT_VERSION`. A re-run exports nothing it already has; an artifact whose bytes no longer
match its sha256 is deleted and rebuilt. Exports run in a pool of worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from fbnet.errors import UserError
from profiler.backends.base import Program, sha256_file
from profiler.protocol import InputSpec

# Bump when the export code changes what it writes: every cached artifact is then rebuilt.
EXPORT_VERSION = "2"
DTYPES = ("fp32", "int8")
BACKENDS = ("xnnpack", "portable")
RUNTIMES = ("executorch", "torchscript")
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
    def suffix(self) -> str:
        return ".ptl" if self.runtime == "torchscript" else ".pte"

    def artifact_id(self) -> str:
        ident = {"job": asdict(self), "versions": runtime_versions(), "export": EXPORT_VERSION}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


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
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        etrecord = folder / meta["etrecord"] if meta.get("etrecord") else None
        return Artifact(job, folder, folder / meta["program"], etrecord, meta["sha256"],
                        meta["export_s"])


# --- the export itself (runs in worker processes) ----------------------------------------------
def _build_module(job: ExportJob):
    import torch

    torch.manual_seed(0)  # same weights every time: identical bytes, identical cache hits
    if job.arch is not None:
        from fbnet.arch import Architecture
        from fbnet.model import FBNet

        module = FBNet(Architecture.from_dict(json.loads(job.arch)))
    else:
        from fbnet.workloads import build_module, parse_key

        module = build_module(parse_key(job.key))
    module.eval()
    if (job.runtime, job.backend, job.dtype) == ("executorch", "xnnpack", "fp32"):
        fold_batchnorm(module)
    return module


def fold_batchnorm(module) -> None:
    """Fold every BatchNorm into the convolution before it. XNNPACK's lowering fuses them
    anyway, so the program runs the same arithmetic (same outputs, same latency), but lowering
    the unfused graph costs over twice the CPU (a 224 network: 14.7 s against 6.3 s). Not for
    the portable kernels or TorchScript-lite, which would run the BatchNorm separately."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in module.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        for i in range(len(parent) - 1):
            if isinstance(parent[i], nn.Conv2d) and isinstance(parent[i + 1], nn.BatchNorm2d):
                parent[i] = fuse_conv_bn_eval(parent[i], parent[i + 1])
                parent[i + 1] = nn.Identity()


def _quantize_int8(module, example):
    """PT2E static int8 for XNNPACK: symmetric per-channel weights, calibrated on random inputs."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module, (example,)).module()
    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    gen = torch.Generator().manual_seed(0)
    for _ in range(_CALIBRATION_BATCHES):
        prepared(torch.randn(example.shape, generator=gen))
    return convert_pt2e(prepared)


def export_to_folder(job: ExportJob, folder: str, etrecord: bool = True) -> dict:
    """Export `job` into `folder`; returns the meta dict (also written as meta.json).

    etrecord=False skips the ETRecord: it does not change the program's bytes and costs ~25% of
    a whole network's export, and networks timed without ETDump (calibration, validation) never
    read it."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    folder_path = Path(folder)
    module = _build_module(job)
    example = torch.randn(job.input_shape, generator=torch.Generator().manual_seed(0))
    program = folder_path / f"program{job.suffix}"
    etrecord_path = None
    if job.runtime == "torchscript":
        if job.dtype != "fp32":
            raise ValueError("the TorchScript-lite path exports fp32 only")
        torch.jit.script(module)._save_for_lite_interpreter(str(program))
    else:
        from executorch.exir import to_edge_transform_and_lower

        if job.dtype == "int8":
            module = _quantize_int8(module, example)
        exported = torch.export.export(module, (example,))
        partitioners = []
        if job.backend == "xnnpack":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner)

            partitioners = [XnnpackPartitioner()]
        edge = to_edge_transform_and_lower(exported, partitioner=partitioners,
                                           generate_etrecord=etrecord)
        et_program = edge.to_executorch()
        program.write_bytes(et_program.buffer)
        if etrecord:
            etrecord_path = folder_path / "etrecord.bin"
            et_program.get_etrecord().save(str(etrecord_path))
    meta = {"job": asdict(job), "program": program.name,
            "etrecord": etrecord_path.name if etrecord_path else None, "sha256": sha256_file(program),
            "export_s": time.perf_counter() - start, "versions": runtime_versions(),
            "export_version": EXPORT_VERSION}
    (folder_path / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _worker_init() -> None:
    import torch

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
    import multiprocessing as mp

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
