"""`--device host --runner native`: the native C++ runner (bench_runner/) on this machine.

It runs the Android backend's own code path - the same probe, pinning, pushes, shell commands
and result handling - over a `LocalTransport` whose scratch folder is laid out like the phone
(<workdir>/native-host/data/local/tmp/fbnet_bench/), with the runner built for the host against
the executorch wheel by android_app/build_host.sh. Its LUT is directly comparable with the
in-process Python runner's (benchmarks/native_vs_python.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fbnet.errors import UserError
from profiler.backends.runner import DEVICE_DIR, REPO, PhoneSession, RunnerBackend
from profiler.backends.base import BackendOptions, LocalTransport

BUILD_SCRIPT = REPO / "android_app" / "build_host.sh"


def host_runner_path(options: BackendOptions) -> Path:
    """The host-built fbnet_bench: --native-runner if given, else build_host.sh's (which builds
    it on first use and is a no-op afterwards)."""
    if options.native_runner:
        path = Path(options.native_runner)
        if not path.is_file():
            raise UserError(f"native runner {path} does not exist; build it with "
                            "android_app/build_host.sh")
        return path
    if not BUILD_SCRIPT.is_file():
        raise UserError(f"{BUILD_SCRIPT} is missing; the native runner cannot be built")
    print("building the native runner (android_app/build_host.sh) if needed...", file=sys.stderr)
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        errors = [l for l in proc.stderr.splitlines() if l.strip()]
        last = errors[-1] if errors else "no output"
        raise UserError(f"building the native runner failed ({last}); run "
                        "android_app/build_host.sh to see the whole log")
    return Path(lines[-1])


def create_backend(profile, options: BackendOptions) -> RunnerBackend:
    workdir = Path(options.workdir or (REPO / ".cache" / "native"))
    root = workdir / "native-host"
    transport = LocalTransport(root)
    device_dir = DEVICE_DIR.lstrip("/")  # relative: lands under the scratch root
    pin = True if options.pin_big_cores is None else options.pin_big_cores
    session = PhoneSession("host", transport, host_runner_path(options), device_dir, workdir,
                           pin_big_cores=pin, threads=options.threads)
    return RunnerBackend(profile, options, [session])
