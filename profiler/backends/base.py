"""The device interface: a `Transport` in front of a device and the `Backend` every device kind
implements.

A profiling run goes:

    backend = create_backend(profile, options)     # lazily imports profiler.backends.<kind>
    with backend:                                  # prepare() ... cleanup()
        info = backend.device_info                 # filled by prepare()
        backend.push_artifacts(programs)           # copy .pte files the device lacks
        result = backend.run_job(manifest)         # docs/bench-protocol.md -> BenchResult
        # result.programs[i].etdump is a local path once run_job returns (pull_results)

Backends for a kind live in `profiler/backends/<kind>.py` and expose
`create_backend(profile, options) -> Backend`; run.py never names them, so the Android and iOS
backends plug in by adding their module. `LocalTransport` runs "device" commands on this host in
a scratch folder: `--runner native` measures the host through it with the host-built runner, and
the tests run the Android backend end to end through it with no phone.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fbnet.errors import UserError
from fbnet.lut import DeviceInfo, RuntimeInfo
from profiler.devices import DeviceProfile
from profiler.protocol import BenchResult, InputSpec, Manifest

RUNNERS = ("python", "native")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- transports -------------------------------------------------------------------------------
class TransportError(UserError):
    """The device could not be reached or a file could not be moved (one line, exit 2)."""


class Transport(abc.ABC):
    """Moves files to/from a device and runs shell commands there (adb, iOS, local)."""

    @abc.abstractmethod
    def push(self, local: Path, remote: str) -> None: ...

    @abc.abstractmethod
    def pull(self, remote: str, local: Path) -> None: ...

    @abc.abstractmethod
    def shell(self, cmd: str, timeout_s: float = 600.0) -> tuple[int, str]:
        """Run `cmd` on the device; (return code, combined stdout+stderr)."""

    def exists(self, remote: str) -> bool:
        code, _ = self.shell(f"test -e {shlex.quote(remote)}", timeout_s=30)
        return code == 0

    def checksum(self, remote: str) -> str | None:
        """sha256 of a device file, or None when it is missing (lets pushes skip known files)."""
        code, out = self.shell(f"sha256sum {shlex.quote(remote)}", timeout_s=60)
        return out.split()[0] if code == 0 and out.strip() else None


class LocalTransport(Transport):
    """A "device" that is a scratch folder on this host: remote paths are relative to `root`.

    The host's device for `--runner native` (profiler.backends.native): the host-built runner
    goes the very code path a phone takes, minus adb. The tests drive that path through it too.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _local(self, remote: str) -> Path:
        path = Path(remote)
        return path if path.is_absolute() else self.root / path

    def push(self, local: Path, remote: str) -> None:
        dest = self._local(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(local, dest)
            shutil.copymode(local, dest)
        except OSError as err:
            raise TransportError(f"cannot copy {local} to {dest}: {err.strerror}") from None

    def pull(self, remote: str, local: Path) -> None:
        src = self._local(remote)
        if not src.exists():
            raise TransportError(f"device file {remote} does not exist (under {self.root})")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, local)

    def shell(self, cmd: str, timeout_s: float = 600.0) -> tuple[int, str]:
        try:
            proc = subprocess.run(cmd, shell=True, cwd=self.root, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TransportError(f"command timed out after {timeout_s:.0f} s: {cmd}") from None
        return proc.returncode, proc.stdout + proc.stderr

    def exists(self, remote: str) -> bool:
        return self._local(remote).exists()

    def checksum(self, remote: str) -> str | None:
        path = self._local(remote)
        return sha256_file(path) if path.is_file() else None


# --- backends ---------------------------------------------------------------------------------
@dataclass
class Program:
    """A compiled program ready to run: a block key (or arch id), its file and input shapes."""

    id: str
    path: Path  # local artifact (.pte / .ptl)
    inputs: list[InputSpec]
    sha256: str | None = None


@dataclass
class BackendOptions:
    """How to run on the device: the runner and the runtime settings (from CLI + profile)."""

    runner: str = "python"  # python: in-process executorch.runtime; native: the C++ fbnet_bench
    runtime: str = "executorch"  # executorch | torchscript
    backend: str = "xnnpack"  # ExecuTorch delegate: xnnpack | portable (no delegate)
    dtype: str = "fp32"  # fp32 | int8
    threads: int = 1
    native_runner: Path | None = None  # host-built fbnet_bench (android_app/build_host.sh)
    workdir: Path | None = None  # local scratch (results, ETDumps pulled back)
    # Android: which phone (else the one matching the profile) and whether to pin the runner to
    # its big cores (None: the profile's default)
    serial: str | None = None
    pin_big_cores: bool | None = None
    # iOS: which iPhone, the FbnetBench app to install, its bundle id, a per-job timeout
    udid: str | None = None
    ios_app: Path | None = None
    bundle_id: str | None = None
    timeout_s: float | None = None


class Backend(abc.ABC):
    """One device kind. Subclasses set `kind` and implement the five steps."""

    kind: str = "?"

    def __init__(self, profile: "DeviceProfile", options: BackendOptions):
        self.profile = profile
        self.options = options
        self.device_info: DeviceInfo | None = None
        self._last_job_end: float | None = None

    def rest_between_jobs(self) -> None:
        """Give the device its profile's cool-down (the pause between rounds) between jobs
        too: a build spreads its rounds over passes, so most jobs hold a single round and a
        phone would otherwise run job after job without a pause. Call at the start of a job,
        and `job_ended` at its end."""
        cooldown_s = self.profile.cooldown_s
        if cooldown_s and self._last_job_end is not None:
            time.sleep(max(0.0, cooldown_s - (time.monotonic() - self._last_job_end)))

    def job_ended(self) -> None:
        self._last_job_end = time.monotonic()

    def start_job(self, manifest: Manifest) -> Manifest:
        """The start of every runner backend's job: a one-line error for an empty one, the
        profile's cool-down between rounds where the manifest sets none, the rest between
        jobs. Returns the manifest to run."""
        if not manifest.programs:
            raise UserError("nothing to measure: the job has no programs")
        if manifest.cooldown_s == 0 and self.profile.cooldown_s:
            manifest = replace(manifest, cooldown_s=self.profile.cooldown_s)
        self.rest_between_jobs()
        return manifest

    @abc.abstractmethod
    def prepare(self) -> DeviceInfo:
        """Find the device, check it is usable, read what it is; sets and returns device_info."""

    @abc.abstractmethod
    def push_artifacts(self, programs: list[Program]) -> None:
        """Make the programs available on the device (skipping ones already there)."""

    @abc.abstractmethod
    def run_job(self, manifest: Manifest) -> BenchResult:
        """Run a manifest whose program paths are local artifacts; ETDump paths come back local."""

    def pull_results(self, dest: Path) -> list[Path]:
        """Copy the raw outputs of the last job (result.json, ETDumps) into `dest`."""
        return []

    def cleanup(self) -> None:
        """Release the device (remove scratch files, stop services)."""

    @abc.abstractmethod
    def runtime_info(self) -> RuntimeInfo:
        """The runtime as it runs there (name, version, backend, dtype, threads)."""

    def __enter__(self) -> "Backend":
        self.prepare()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def create_backend(profile: "DeviceProfile", options: BackendOptions) -> Backend:
    """The backend for a profile's kind, imported on demand from profiler.backends.<kind>."""
    module_name = f"profiler.backends.{profile.kind}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise  # the backend exists but one of its own imports is missing: a real bug
        raise UserError(f"the {profile.kind} backend (for --device {profile.name}) is not "
                        f"available yet; use --device host, or a LUT from luts/") from None
    factory = getattr(module, "create_backend", None)
    if factory is None:
        raise UserError(f"{module_name} defines no create_backend(profile, options); "
                        "the backend is incomplete")
    return factory(profile, options)
