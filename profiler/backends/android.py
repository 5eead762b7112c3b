"""Android backend: the native `fbnet_bench` runner on a phone over adb.

The adb server finds the phones (`--device s8` matches the model, `android:SER1,SER2` names
them); each becomes a PhoneSession over an AdbTransport (profiler/backends/runner.py says what
a session does on the device: probe, pin to the big cores, push, run, pull, read thermals).
"""

from __future__ import annotations

import os
from pathlib import Path

from fbnet.errors import UserError
from profiler.backends.adb_transport import AdbTransport, adb_client, list_attached, select_serials
from profiler.backends.base import Backend, BackendOptions
from profiler.backends.runner import DEVICE_DIR, REPO, RUNNER_NAME, PhoneSession, RunnerBackend

# Where android_app/build_android.sh leaves the arm64-v8a runner.
DEFAULT_ANDROID_RUNNER = REPO / "android_app" / "build-android" / "runner" / RUNNER_NAME


# --- finding the phones -----------------------------------------------------------------------
def android_runner_path(options: BackendOptions) -> Path:
    """The phone's runner: --native-runner, $FBNET_ANDROID_RUNNER, or build_android.sh's."""
    given = options.native_runner or os.environ.get("FBNET_ANDROID_RUNNER")
    path = Path(given) if given else DEFAULT_ANDROID_RUNNER
    if not path.is_file():
        raise UserError(f"no Android runner at {path}; build it with android_app/build_android.sh "
                        "(see docs/android.md) or set FBNET_ANDROID_RUNNER to its path")
    return path


def create_backend(profile, options: BackendOptions) -> Backend:
    """Find the phone(s) for `profile` on the adb server and build the backend."""
    wanted = tuple(profile.serials) or ((options.serial,) if options.serial else ())
    client = adb_client()
    serials = select_serials(list_attached(client), wanted, profile.name, profile.matches_model)
    runner = android_runner_path(options)
    workdir = Path(options.workdir or (REPO / ".cache" / "android"))
    pin = profile.pin_big_cores if options.pin_big_cores is None else options.pin_big_cores
    sessions = [PhoneSession(s, AdbTransport(client, s), runner, DEVICE_DIR, workdir, pin,
                             options.threads) for s in serials]
    return RunnerBackend(profile, options, sessions)
