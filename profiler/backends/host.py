"""The host backend: this machine's CPU.

`--runner python` (default) runs jobs in this process through `executorch.runtime` (or the
TorchScript-lite interpreter for .ptl programs). `--runner native` runs the C++ `fbnet_bench`
built by android_app/build_host.sh through a `LocalTransport`, i.e. the exact code path an
Android phone takes, minus adb.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from fbnet.errors import UserError
from fbnet.lut import DeviceInfo, RuntimeInfo
from profiler.backends.base import Backend, BackendOptions, LocalTransport, Program
from profiler.protocol import BenchResult, Manifest, ProgramSpec

DEFAULT_NATIVE_RUNNER = Path("android_app/build-host/fbnet_bench")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class HostBackend(Backend):
    kind = "host"

    def __init__(self, profile, options: BackendOptions):
        super().__init__(profile, options)
        self._scratch: Path | None = None
        self._transport: LocalTransport | None = None
        self._remote: dict[str, str] = {}  # local artifact path -> path in the scratch "device"

    def prepare(self) -> DeviceInfo:
        if self.options.runner == "native":
            runner = Path(self.options.native_runner or DEFAULT_NATIVE_RUNNER)
            if not (runner.is_file() and os.access(runner, os.X_OK)):
                raise UserError(f"native runner {runner} not found; build it with "
                                "android_app/build_host.sh or use --runner python")
            if self.options.runtime != "executorch":
                raise UserError("--runner native runs ExecuTorch programs only; "
                                "use --runner python with --runtime torchscript")
            self._scratch = Path(tempfile.mkdtemp(prefix="fbnet-native-"))
            self._transport = LocalTransport(self._scratch)
            self._transport.push(runner, "fbnet_bench")
        extra = {"cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                 "runner": self.options.runner}
        self.device_info = DeviceInfo(name=self.profile.name, model=platform.node() or None,
                                      cpu=_cpu_model(), os=f"{platform.system()} "
                                      f"{platform.release()}", extra=extra)
        return self.device_info

    def push_artifacts(self, programs: list[Program]) -> None:
        if self._transport is None:
            return  # the in-process runner reads the cache directly
        for program in programs:
            remote = f"programs/{program.sha256 or program.path.name}{program.path.suffix}"
            if self._transport.checksum(remote) != program.sha256:
                self._transport.push(program.path, remote)
            self._remote[str(program.path)] = remote

    def run_job(self, manifest: Manifest) -> BenchResult:
        if self._transport is None:
            from profiler.measure import run_manifest

            workdir = Path(self.options.workdir or tempfile.mkdtemp(prefix="fbnet-job-"))
            return run_manifest(manifest, Path("/"), workdir)
        return self._run_native(manifest)

    def _run_native(self, manifest: Manifest) -> BenchResult:
        assert self._transport is not None and self._scratch is not None
        job = Manifest(**{**manifest.__dict__, "programs": [
            ProgramSpec(p.id, self._remote[str(Path(p.path))], p.inputs)
            for p in manifest.programs]})
        shutil.rmtree(self._scratch / "etdump", ignore_errors=True)
        job.save(self._scratch / "manifest.json")
        code, out = self._transport.shell("./fbnet_bench --manifest manifest.json",
                                          timeout_s=3600)
        if code not in (0, 1) or not (self._scratch / "result.json").is_file():
            last = out.strip().splitlines()[-1] if out.strip() else f"exit code {code}"
            raise UserError(f"native runner failed: {last}")
        workdir = Path(self.options.workdir or tempfile.mkdtemp(prefix="fbnet-job-"))
        self.pull_results(workdir)
        result = BenchResult.load(workdir / "result.json")
        for program in result.programs:  # ETDump paths become local
            if program.etdump:
                program.etdump = str(workdir / program.etdump)
        return result

    def pull_results(self, dest: Path) -> list[Path]:
        if self._transport is None:
            return []
        dest.mkdir(parents=True, exist_ok=True)
        pulled = [dest / "result.json"]
        self._transport.pull("result.json", pulled[0])
        data = json.loads(pulled[0].read_text())
        for program in data.get("programs", []):
            if program.get("etdump"):
                self._transport.pull(program["etdump"], dest / program["etdump"])
                pulled.append(dest / program["etdump"])
        return pulled

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = self._transport = None

    def runtime_info(self) -> RuntimeInfo:
        from profiler.export import runtime_versions

        versions = runtime_versions()
        if self.options.runtime == "torchscript":
            return RuntimeInfo("torchscript-lite", versions["torch"], None, "fp32",
                               self.options.threads)
        return RuntimeInfo("executorch", versions["executorch"], self.options.backend,
                           self.options.dtype, self.options.threads)


def create_backend(profile, options: BackendOptions) -> HostBackend:
    return HostBackend(profile, options)

