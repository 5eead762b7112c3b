"""The host backend: this machine's CPU.

`--runner python` (default) runs jobs in this process through `executorch.runtime` (or the
TorchScript-lite interpreter for .ptl programs). `--runner native` hands over to
profiler/backends/native.py: the C++ `fbnet_bench` built by android_app/build_host.sh, driven by
the Android backend's code over a `LocalTransport` (the exact path a phone takes, minus adb).
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

from fbnet.errors import UserError
from fbnet.lut import DeviceInfo, RuntimeInfo
from profiler.backends.base import Backend, BackendOptions, Program
from profiler.backends.native import create_backend as create_native
from profiler.export import runtime_versions
from profiler.measure import run_manifest
from profiler.protocol import BenchResult, Manifest


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class HostBackend(Backend):
    """Runs jobs in this process through the Python runtime bindings."""

    kind = "host"

    def prepare(self) -> DeviceInfo:
        extra = {"cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                 "runner": self.options.runner}
        self.device_info = DeviceInfo(name=self.profile.name, model=platform.node() or None,
                                      cpu=_cpu_model(), os=f"{platform.system()} "
                                      f"{platform.release()}", extra=extra)
        return self.device_info

    def push_artifacts(self, programs: list[Program]) -> None:
        """Nothing to copy: the in-process runner reads the artifact cache directly."""

    def run_job(self, manifest: Manifest) -> BenchResult:
        workdir = Path(self.options.workdir or tempfile.mkdtemp(prefix="fbnet-job-"))
        return run_manifest(manifest, Path("/"), workdir)

    def pull_results(self, dest: Path) -> list[Path]:
        return []  # results are already local

    def cleanup(self) -> None:
        pass

    def runtime_info(self) -> RuntimeInfo:
        versions = runtime_versions()
        if self.options.runtime == "torchscript":
            return RuntimeInfo("torchscript-lite", versions["torch"], None, "fp32",
                               self.options.threads)
        return RuntimeInfo("executorch", versions["executorch"], self.options.backend,
                           self.options.dtype, self.options.threads)


def create_backend(profile, options: BackendOptions) -> Backend:
    if options.runner == "native":
        # the Android backend's own code path over a local "phone" (profiler/backends/native.py)
        if options.runtime != "executorch":
            raise UserError("--runner native runs ExecuTorch programs only; "
                            "use --runner python with --runtime torchscript")
        return create_native(profile, options)
    return HostBackend(profile, options)
