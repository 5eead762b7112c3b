"""Reaching Android phones through the adb server (adbutils): find them, move files, run commands.

The adb server is the `adb` binary of Android platform-tools (Debian package `adb`; the adbutils
wheel bundles one too). adbutils talks to it on ANDROID_ADB_SERVER_HOST:ANDROID_ADB_SERVER_PORT
(default 127.0.0.1:5037) and starts it when it is not running.
"""

from __future__ import annotations

import os
import shlex
import shutil
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import adbutils
from adbutils.errors import AdbError, AdbTimeout

from profiler.backends.base import Transport, TransportError

# What a user has to do when no phone shows up; printed in every "no device" error.
HOW_TO_CONNECT = (
    "connect the phone by USB, enable USB debugging (Settings > About phone > tap Build number "
    "7 times, then Settings > Developer options > USB debugging), accept the 'Allow USB "
    "debugging?' prompt on the phone, and check that `adb devices` lists it as 'device'"
)


# What adbutils raises when the link to a phone fails mid-exchange: its own errors, socket errors,
# and what its parsers raise on a reply cut short: EOFError from shell v2's read_exact,
# AssertionError from sync stat's tag check (struct.error under `python -O`), struct.error from
# short length fields, ValueError from shell v1's and the host protocol's number parsing.
LINK_ERRORS = (AdbError, OSError, EOFError, AssertionError, struct.error, ValueError)


def find_adb_binary() -> str | None:
    """The adb executable adbutils would start: $ADBUTILS_ADB_PATH, `adb` on PATH, or the one
    bundled in the adbutils wheel."""
    env = os.environ.get("ADBUTILS_ADB_PATH")
    if env and os.access(env, os.X_OK):
        return env
    on_path = shutil.which("adb")
    if on_path:
        return on_path
    bundled = Path(adbutils.__file__).parent / "binaries" / "adb"
    return str(bundled) if bundled.is_file() and os.access(bundled, os.X_OK) else None


@dataclass
class AttachedDevice:
    """One line of `adb devices`, plus the model for phones that are ready."""

    serial: str
    state: str  # device | unauthorized | offline | ...
    model: str | None = None

    def label(self) -> str:
        return f"{self.serial} ({self.model or self.state})"


def adb_client() -> adbutils.AdbClient:
    """A client of a running adb server (started if needed); a UserError when there is none."""
    client = adbutils.AdbClient()  # host/port from ANDROID_ADB_SERVER_HOST/PORT
    where = f"{client.host}:{client.port}"
    try:
        client.server_version()
    except LINK_ERRORS as err:
        hint = ("install Android platform-tools (e.g. `apt-get install adb`) and run "
                "`adb start-server`") if find_adb_binary() is None else "run `adb start-server`"
        raise TransportError(f"cannot reach the adb server at {where} ({err}); {hint}, then "
                             f"{HOW_TO_CONNECT}") from None
    return client


def list_attached(client: adbutils.AdbClient) -> list[AttachedDevice]:
    """Every device the adb server sees, with ro.product.model read from the ready ones."""
    found = []
    try:
        for info in client.list():
            model = None
            if info.state == "device":
                model = client.device(info.serial).getprop("ro.product.model") or None
            found.append(AttachedDevice(info.serial, info.state, model))
    except LINK_ERRORS as err:
        raise TransportError(f"the adb server failed to list devices ({err}); "
                             "restart it with `adb kill-server && adb start-server`") from None
    return found


def select_serials(attached: list[AttachedDevice], wanted: tuple[str, ...], profile_name: str,
                   matches_model) -> list[str]:
    """Which phones to use: the `wanted` serials if given, else the one device whose model the
    profile matches. Every way this can fail is a one-line UserError that says what to do."""
    ready = [d for d in attached if d.state == "device"]
    if not attached:
        raise TransportError(f"no Android device is connected (for --device {profile_name}): "
                             f"{HOW_TO_CONNECT}")
    if wanted:
        by_serial = {d.serial: d for d in attached}
        for serial in wanted:
            dev = by_serial.get(serial)
            if dev is None:
                raise TransportError(
                    f"no Android device with serial {serial} is connected (adb sees: "
                    f"{', '.join(d.label() for d in attached)}); check `adb devices`")
            _require_ready(dev)
            if not matches_model(dev.model):  # e.g. ANDROID_SERIAL names a Pixel for --device s8
                raise TransportError(f"device {serial} ({dev.model}) is not a {profile_name} "
                                     f"phone; use --device android:{serial} to measure it as "
                                     "itself")
        return list(wanted)
    if not ready:
        _require_ready(attached[0])
    matching = [d for d in ready if matches_model(d.model)]
    if not matching:
        raise TransportError(
            f"no connected Android device matches --device {profile_name} (adb sees: "
            f"{', '.join(d.label() for d in attached)}); use --device android:SERIAL "
            "(or ANDROID_SERIAL=SERIAL) to measure one of them")
    if len(matching) > 1:
        serials = ",".join(d.serial for d in matching)
        raise TransportError(
            f"{len(matching)} devices match --device {profile_name} "
            f"({', '.join(d.label() for d in matching)}); pick one with ANDROID_SERIAL=SERIAL, "
            f"or use them all with --device android:{serials}")
    return [matching[0].serial]


def _require_ready(dev: AttachedDevice) -> None:
    if dev.state == "unauthorized":
        raise TransportError(f"device {dev.serial} has not authorized this computer: unlock it, "
                             "accept the 'Allow USB debugging?' prompt, and try again")
    if dev.state != "device":
        raise TransportError(f"device {dev.serial} is {dev.state}: reconnect the USB cable "
                             "(or `adb reconnect`) until `adb devices` lists it as 'device'")


def v1_command(cmd: str) -> str:
    """`cmd` as one simple command for the old shell protocol, on which adbutils learns the exit
    status by appending `; echo X4EXIT:$?`. Run as is, a script ending in a newline would put
    that `;` at the start of a line (a syntax error in every shell), and one that calls `exit`
    would skip the echo; inside `sh -c` neither can happen."""
    return "sh -c " + shlex.quote(cmd)


class AdbTransport(Transport):
    """A phone reached through the adb server: push/pull with the sync protocol, shell commands
    with their exit status (from shell protocol v2 where the phone offers it, Android 7+).
    Any failure of the link, in any phase, is one TransportError that names the phone."""

    def __init__(self, client: adbutils.AdbClient, serial: str):
        self.serial = serial
        self.device = client.device(serial)
        self._shell_v2: bool | None = None  # read from the device's features on first use

    @contextmanager
    def _link(self, failed: str, advice: str, timed_out: str | None = None):
        try:
            yield
        except AdbTimeout:
            raise TransportError(timed_out or f"{failed} (timed out); {advice}") from None
        except LINK_ERRORS as err:
            detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            raise TransportError(f"{failed} ({detail}); {advice}") from None

    def uses_shell_v2(self) -> bool:
        if self._shell_v2 is None:
            with self._link(f"{self.serial}: adb shell failed",  # its first step
                            "is the phone still connected? (`adb devices`)"):
                self._shell_v2 = "shell_v2" in self.device.get_features().split(",")
        return self._shell_v2

    def push(self, local: Path, remote: str) -> None:
        mode = 0o755 if os.access(local, os.X_OK) else 0o644
        with self._link(f"cannot push {local} to {self.serial}:{remote}",
                        "check the USB connection and free space on the phone"):
            self.device.sync.push(str(local), remote, mode=mode, check=True)

    def pull(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        with self._link(f"cannot pull {self.serial}:{remote}",
                        "check the USB connection (`adb devices`)"):
            self.device.sync.pull(remote, str(local))

    def shell(self, cmd: str, timeout_s: float = 600.0) -> tuple[int, str]:
        v2 = self.uses_shell_v2()
        with self._link(f"{self.serial}: adb shell failed",
                        "is the phone still connected? (`adb devices`)",
                        timed_out=f"{self.serial}: command timed out after {timeout_s:.0f} s: "
                                  f"{cmd}"):
            if v2:
                ret = self.device.shell2(cmd, timeout=timeout_s, v2=True)
            else:
                ret = self.device.shell2(v1_command(cmd), timeout=timeout_s)
        return ret.returncode, ret.output
