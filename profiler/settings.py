"""Typed settings of a measurement: how programs are timed (`Settings`) and where they run
(`Target`, the one place a backend is opened from)."""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fbnet.errors import UserError
from fbnet.lowering import LoweringRecipe, recipe_for
from fbnet.lut import Lut
from profiler.backends.base import RUNNERS, Backend, BackendOptions, create_backend
from profiler.devices import DeviceProfile, resolve_device
from profiler.protocol import Manifest, ProgramSpec

CLOCKS = ("auto", "wall", "thread_cpu")


# With the thread_cpu clock (a syscall, ~0.2 us inside each timed span here), a sample lasts at
# least this long, so the clock is under 0.5% of it (benchmarks/timer_overhead.py)
THREAD_CPU_MIN_SAMPLE_MS = 0.05


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
                        etdump_iters=self.etdump_iters, clock=self.clock,
                        min_sample_ms=THREAD_CPU_MIN_SAMPLE_MS if self.clock == "thread_cpu"
                        else 0.0)


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
    ios_app: Path | None = None  # the FbnetBench app to install on an iPhone that lacks it
    bundle_id: str | None = None  # the installed FbnetBench's bundle id

    @property
    def profile(self) -> DeviceProfile:
        return resolve_device(self.device)

    def open(self, s: Settings, purpose: str) -> Backend:
        """The backend running programs of settings `s` here, with a fresh scratch folder
        named for `purpose`; use it as a context manager."""
        options = BackendOptions(runner=self.runner, runtime=s.runtime, backend=s.backend,
                                 dtype=s.dtype, threads=s.threads,
                                 native_runner=self.native_runner,
                                 workdir=Path(tempfile.mkdtemp(prefix=f"fbnet-{purpose}-")),
                                 serial=self.serial, udid=self.udid, ios_app=self.ios_app,
                                 bundle_id=self.bundle_id)
        return create_backend(self.profile, options)


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """Where programs run: the same flags, meaning the same, in every command that measures.
    The environment variables a phone's tools use are read here, as the flags' defaults."""
    g = p.add_argument_group("target")
    g.add_argument("--device", default="host",
                   help="host, s8, pixel3, iphone_x, android:SERIAL[,SERIAL], ios:UDID "
                        "(default host)")
    g.add_argument("--runner", choices=RUNNERS, default="python",
                   help="python: in-process runtime; native: the C++ fbnet_bench")
    g.add_argument("--native-runner", type=Path, help="path of the host-built fbnet_bench")
    g.add_argument("--serial", default=os.environ.get("ANDROID_SERIAL"),
                   help="Android phone serial (default $ANDROID_SERIAL, else the one phone "
                        "matching --device)")
    g.add_argument("--udid", help="iPhone UDID (else the one iPhone matching --device)")
    g.add_argument("--ios-app", type=Path, default=os.environ.get("FBNET_IOS_APP"),
                   help="FbnetBench .app/.ipa to install on an iPhone that lacks it (default "
                        "$FBNET_IOS_APP)")
    g.add_argument("--bundle-id", default=os.environ.get("FBNET_IOS_BUNDLE_ID"),
                   help="bundle id of the installed FbnetBench (default $FBNET_IOS_BUNDLE_ID, "
                        "else the project's)")


def target_from_args(args: argparse.Namespace) -> Target:
    return Target(args.device, args.runner, args.native_runner, args.serial, args.udid,
                  Path(args.ios_app) if args.ios_app else None, args.bundle_id)


def remeasure_settings(lut: Lut, source: Path | str, target: Target, *, warmup: int, iters: int,
                       rounds: int, clock: str = "auto") -> Settings:
    """How to time programs again the way `lut` (read from `source`) was measured: its
    runtime, delegate, dtype, threads and clock (unless `clock` says otherwise), with these
    run counts. A one-line error for a LUT this profiler cannot re-measure."""
    rt = lut.runtime
    if rt.name not in ("executorch", "torchscript-lite"):
        raise UserError(
            f"{source} is {lut.provenance.kind} for {rt.name} on {lut.device.name}, which this "
            "profiler cannot re-measure; use a LUT built by profiler.run (e.g. measure the "
            f"device with python -m profiler.run --device {lut.device.name})")
    runtime = "torchscript" if rt.name.startswith("torchscript") else "executorch"
    threads = rt.threads or 1
    # the LUT's clock unless told otherwise, so both sides are timed the same way
    resolved = resolve_clock(clock if clock != "auto" else lut.measurement.clock or "auto",
                             target.profile.kind, target.runner, threads)
    return Settings(dtype=rt.dtype or "fp32", backend=rt.backend or "xnnpack", runtime=runtime,
                    threads=threads, warmup=warmup, iters=iters, rounds=rounds, ops=False,
                    clock=resolved)
