"""The adb transport against a real adb server with no phone attached.

The server is the adb binary of the adbutils wheel (or `adb` on PATH, e.g. Debian's package),
started here on a free port and stopped after; nothing touches a user's default server on 5037.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from emulated_phone.phone import adb_server as start_adb_server
from emulated_phone.phone import free_port
from fbnet.errors import UserError
from profiler.backends.adb_transport import (HOW_TO_CONNECT, AdbTransport, AttachedDevice,
                                             adb_client, find_adb_binary, list_attached,
                                             select_serials)

ROOT = Path(__file__).resolve().parents[1]
ADB = find_adb_binary()
pytestmark = pytest.mark.skipif(ADB is None, reason="no adb binary: the adbutils wheel bundles "
                                "one on x86-64 Linux; elsewhere install Debian's `adb` package")


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory):
    """A real adb server on a private port; yields the environment that points clients at it."""
    with start_adb_server(ADB, tmp_path_factory.mktemp("adb_home")) as env:
        yield env


def test_real_server_lists_no_device(adb_server, monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_server["ANDROID_ADB_SERVER_PORT"])
    client = adb_client()
    assert client.port == int(adb_server["ANDROID_ADB_SERVER_PORT"])
    attached = list_attached(client)
    assert attached == []
    with pytest.raises(UserError, match="no Android device is connected"):
        select_serials(attached, (), "s8", lambda model: True)


def test_transport_to_a_vanished_phone_is_a_user_error(adb_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_server["ANDROID_ADB_SERVER_PORT"])
    transport = AdbTransport(adb_client(), "GONE42")
    with pytest.raises(UserError, match="GONE42: adb shell failed.*adb devices"):
        transport.shell("true", timeout_s=10)
    local = tmp_path / "f.txt"
    local.write_text("x")
    with pytest.raises(UserError, match="cannot push"):
        transport.push(local, "/data/local/tmp/f.txt")
    with pytest.raises(UserError, match="cannot pull"):
        transport.pull("/data/local/tmp/f.txt", tmp_path / "back.txt")


def test_no_server_is_a_user_error(tmp_path, monkeypatch):
    # Nothing listens on this port and adbutils must not start a server: point it at no binary.
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(tmp_path / "no-adb-here"))
    with pytest.raises(UserError, match="cannot reach the adb server"):
        adb_client()


def test_profile_run_without_phone_says_how_to_connect(adb_server):
    proc = subprocess.run([sys.executable, "-m", "profiler.run", "--device", "s8",
                           "--resolution", "32", "--out", "unused.json"], cwd=ROOT,
                          env=adb_server, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: no Android device is connected"), proc.stderr
    assert "USB debugging" in lines[-1] and "adb devices" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_unknown_serial_without_phone(adb_server):
    proc = subprocess.run([sys.executable, "-m", "profiler.run", "--device", "android:XYZ123",
                           "--resolution", "32"], cwd=ROOT, env=adb_server,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "no Android device is connected" in proc.stderr


def test_selection_rules():
    s8 = AttachedDevice("ce0117", "device", "SM-G950F")
    pixel = AttachedDevice("89UX0H", "device", "Pixel 3")
    locked = AttachedDevice("R58M", "unauthorized")
    is_s8 = lambda model: model is not None and model.startswith("SM-G950")  # noqa: E731
    assert select_serials([pixel, s8], (), "s8", is_s8) == ["ce0117"]
    anything = lambda model: True  # noqa: E731  (a generic android:SERIAL profile)
    assert select_serials([pixel, s8], ("89UX0H",), "android:89UX0H", anything) == ["89UX0H"]
    assert select_serials([pixel, s8], ("ce0117",), "s8", is_s8) == ["ce0117"]
    with pytest.raises(UserError, match=r"89UX0H \(Pixel 3\) is not a s8 phone.*"
                                        r"android:89UX0H"):
        select_serials([pixel, s8], ("89UX0H",), "s8", is_s8)
    with pytest.raises(UserError, match=r"no connected Android device matches --device s8.*"
                                        r"89UX0H \(Pixel 3\)"):
        select_serials([pixel], (), "s8", is_s8)
    with pytest.raises(UserError, match="android:ce0117,ce0118"):
        select_serials([s8, AttachedDevice("ce0118", "device", "SM-G950U")], (), "s8", is_s8)
    with pytest.raises(UserError, match="Allow USB debugging"):
        select_serials([locked], (), "s8", is_s8)
    with pytest.raises(UserError, match="no Android device with serial NOPE"):
        select_serials([s8], ("NOPE",), "android:NOPE", is_s8)
    assert "USB debugging" in HOW_TO_CONNECT and "adb devices" in HOW_TO_CONNECT
