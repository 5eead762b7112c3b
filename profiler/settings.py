"""Typed settings of a measurement: how programs are timed (`Settings`) and where they run
(`Target`, the one place a backend is opened from)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from fbnet.errors import UserError
from fbnet.lowering import LoweringRecipe, recipe_for
from profiler.backends.base import Backend, BackendOptions, create_backend
from profiler.devices import DeviceProfile, resolve_device
from profiler.protocol import Manifest, ProgramSpec

CLOCKS = ("auto", "wall", "thread_cpu")


@dataclass
class Settings:
    dtype: str = "fp32"
    backend: str = "xnnpack"
    runtime: str = "executorch"
    threads: int = 1
    warmup: int = 10
    iters: int = 50
    rounds: int = 5
    etdump_iters: int = 10
    ops: bool = True  # per-op breakdown (separate ETDump / profiler run)
    clock: str = "wall"  # wall | thread_cpu (see profiler.protocol.Manifest)

    @property
    def recipe(self) -> LoweringRecipe:
        """The lowering recipe (fbnet.lowering) the programs are exported by."""
        return recipe_for(self.dtype, self.backend, self.runtime)

    def manifest(self, programs: list[ProgramSpec], etdump: bool | None = None) -> Manifest:
        return Manifest(programs, warmup=self.warmup, iters=self.iters, rounds=self.rounds,
                        threads=self.threads, etdump=self.ops if etdump is None else etdump,
                        etdump_iters=self.etdump_iters, clock=self.clock)


def resolve_clock(clock: str, device_kind: str, runner: str, threads: int) -> str:
    """auto: the thread's CPU time (capped by wall time) on the host with the in-process runner
    and 1 thread, where other processes and the sandbox add wall time that is not the block's
    (see docs/profiler.md); wall time, the protocol's clock, everywhere else."""
    if clock == "auto":
        return "thread_cpu" if (device_kind, runner, threads) == ("host", "python", 1) \
            else "wall"
    if clock == "thread_cpu" and (device_kind, runner, threads) != ("host", "python", 1):
        raise UserError("--clock thread_cpu needs --device host, --runner python, --threads 1")
    return clock


@dataclass(frozen=True)
class Target:
    """Where programs run: a device (`--device`) and the runner that drives it."""

    device: str = "host"
    runner: str = "python"  # python: in-process runtime; native: the C++ fbnet_bench
    native_runner: Path | None = None  # host-built fbnet_bench
    serial: str | None = None  # Android phone serial
    udid: str | None = None  # iPhone UDID

    @property
    def profile(self) -> DeviceProfile:
        return resolve_device(self.device)

    def open(self, s: Settings, purpose: str) -> Backend:
        """The backend running programs of settings `s` here, with a fresh scratch folder
        named for `purpose`; use it as a context manager."""
        extra = {k: v for k, v in (("serial", self.serial), ("udid", self.udid)) if v}
        options = BackendOptions(runner=self.runner, runtime=s.runtime, backend=s.backend,
                                 dtype=s.dtype, threads=s.threads,
                                 native_runner=self.native_runner,
                                 workdir=Path(tempfile.mkdtemp(prefix=f"fbnet-{purpose}-")),
                                 extra=extra)
        return create_backend(self.profile, options)
