"""An emulated Android phone for tests: adbd.py in a bubblewrap sandbox laid out like a phone,
and a private adb server (the real `adb` binary) that reaches it with `adb connect`.

The sandbox's view of the machine:
- /system/bin/sh is mksh (Android's shell); /system/bin holds getprop (answers from
  /system/build.prop) and links to this host's coreutils for the toybox commands a phone has;
- /proc/cpuinfo and /sys are files written here: a big.LITTLE CPU (per-core cpuinfo_max_freq,
  scaling_governor) over the CPUs this process may use, so `taskset` pins for real, and thermal
  zones;
- /data/local/tmp is a folder of this host that outlives the daemon (a phone's storage), or a
  small tmpfs (a full phone);
- adbd runs as uid 2000 (`shell`) in its own pid namespace: killing it takes every command it
  started with it, as a phone vanishing from USB does.

An arm64 phone (`arch="aarch64"`) runs aarch64 programs under qemu-user as a Cortex-A76: a
binfmt_misc instance private to the sandbox's user namespace hands every aarch64 executable to
qemu-aarch64 (Linux 6.7+), Debian's arm64 libc (/usr/aarch64-linux-gnu) is qemu's loader
prefix, and its `uname` is an aarch64 build, so the phone reports what it runs.

By hand (docs/android.md, "The emulated phone"): `python tests/emulated_phone/phone.py` starts one
and `adb connect`s it to the adb server that `adb` and the profiler use, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from profiler.backends.adb_transport import find_adb_binary

HERE = Path(__file__).resolve().parent
DAEMON = HERE / "adbd.py"
SHELL_UID = 2000  # AID_SHELL: the user an adb shell runs as
# toybox commands of a phone's /system/bin that the profiler's shell commands use (and a few more)
TOYBOX = ("basename cat chmod cp cut date dd df dirname du echo env grep head id kill ln ls "
          "md5sum mkdir mv nproc ps pwd readlink rm rmdir sed sha1sum sha256sum sleep sort stat "
          "tail taskset tee test touch tr true false uname uniq wc which xargs").split()
GETPROP = """#!/system/bin/sh
# getprop [NAME]: Android's property reader, answering from /system/build.prop
if [ $# -eq 0 ]; then
  while IFS== read -r k v; do
    case $k in ''|'#'*) ;; *) echo "[$k]: [$v]" ;; esac
  done </system/build.prop
  exit 0
fi
while IFS== read -r k v; do
  [ "$k" = "$1" ] && { echo "$v"; exit 0; }
done </system/build.prop
echo "${2-}"
"""
PIXEL3_PROPS = {  # the properties the profiler reads, as a Pixel 3 reports them
    "ro.product.model": "Pixel 3", "ro.product.manufacturer": "Google",
    "ro.product.name": "blueline", "ro.product.device": "blueline",
    "ro.soc.manufacturer": "Qualcomm", "ro.soc.model": "SDM845",
    "ro.board.platform": "sdm845", "ro.hardware": "blueline",
    "ro.build.version.release": "12", "ro.build.version.sdk": "31",
    # the runner pushed here is the host's x86-64 build, so the phone says what it runs
    "ro.product.cpu.abi": "x86_64",
}
LITTLE_KHZ, BIG_KHZ = 1766400, 2803200  # SDM845's Cortex-A55 and Cortex-A75 clusters
ARM_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                "lrcpc dcpop asimddp")  # an SDM845 core's /proc/cpuinfo Features
# qemu-aarch64's binfmt_misc entry (from QEMU's qemu-binfmt-conf.sh); F: qemu opened at once
BINFMT_AARCH64 = (r":qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00"
                  r"\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff"
                  r"\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64:F")
ARM_SYSROOT = "/usr/aarch64-linux-gnu"  # Debian's arm64 libc (g++-aarch64-linux-gnu)
QEMU_CPU = "cortex-a76"  # so XNNPACK takes a phone's code paths (dot product, fp16)


def missing_tools(arch: str = "x86_64") -> list[str]:
    """What this host lacks to emulate a phone, each with the Debian package that has it."""
    tools = [("bwrap", "bubblewrap"), ("mksh", "mksh")]
    if arch == "aarch64":
        tools += [("qemu-aarch64", "qemu-user"), ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
                  ("unshare", "util-linux")]
    missing = [f"{tool} (Debian package `{pkg}`)" for tool, pkg in tools if not shutil.which(tool)]
    if find_adb_binary() is None:  # Debian's, or the one the adbutils wheel bundles
        missing.append("adb (Debian package `adb`)")
    return missing


def sandbox_error() -> str | None:
    """Why bubblewrap cannot make a sandbox here (e.g. user namespaces are off), or None."""
    proc = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-user", "--unshare-pid",
                           "true"], capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit {proc.returncode}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, ready, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text()[-800:] if log and log.exists() else ""
            raise RuntimeError(f"{what} did not happen within {timeout_s:.0f} s. {tail}")
        time.sleep(0.05)


# --- the adb server -----------------------------------------------------------------------------
@contextmanager
def adb_server(adb: str, home: Path):
    """A real adb server on a private port; yields the environment pointing clients at it."""
    port = free_port()
    env = dict(os.environ, HOME=str(home), ANDROID_ADB_SERVER_PORT=str(port), ADB_MDNS="0")
    env.pop("ANDROID_SERIAL", None)
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([adb, "-P", str(port), "server", "nodaemon"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait("the adb server starting", lambda: listening(port) or server.poll() is not None,
                  20, log_path)
            if server.poll() is not None:
                raise RuntimeError(f"adb server exited: {log_path.read_text()[-500:]}")
            yield env
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def adb(env: dict, *args: str, timeout_s: float = 30) -> str:
    port = env.get("ANDROID_ADB_SERVER_PORT", "5037")
    proc = subprocess.run([find_adb_binary(), "-P", port, *args], env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    return proc.stdout + proc.stderr


def device_state(env: dict, serial: str) -> str | None:
    for line in adb(env, "devices").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == serial:
            return parts[1]
    return None


# --- the phone ------------------------------------------------------------------------------------
@dataclass
class Phone:
    """One emulated phone: its files on this host and, while it is up, its adbd."""

    root: Path  # /system, /sys, /proc/cpuinfo and /data of the phone live under here
    runner: Path  # the runner it will be sent: the libraries it links are made visible
    props: dict = field(default_factory=lambda: dict(PIXEL3_PROPS))
    shell_v2: bool = True  # advertise shell protocol v2 (Android 7+)
    arch: str = "x86_64"  # or aarch64: programs run under qemu-user
    data_bytes: int | None = None  # /data/local/tmp as a tmpfs of this size: a full phone
    fault: str | None = None  # adbd's --fault: the link fails at a counted moment (adbd.Fault)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        """The phone's /data/local/tmp, seen from this host."""
        return self.root / "data" / "local" / "tmp"

    def build(self) -> None:
        """Write the phone's read-only files (idempotent)."""
        bindir = self.root / "system" / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        links = {"sh": shutil.which("mksh")}
        links.update({tool: shutil.which(tool) for tool in TOYBOX})
        for name, target in links.items():
            if target and not (bindir / name).is_symlink():
                (bindir / name).symlink_to(target)
        (bindir / "getprop").write_text(GETPROP)
        (bindir / "getprop").chmod(0o755)
        shutil.copyfile(DAEMON, bindir / "adbd.py")
        props = dict(self.props)
        if self.arch == "aarch64":
            props["ro.product.cpu.abi"] = "arm64-v8a"
            (bindir / "uname").unlink(missing_ok=True)
            subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-static", "-o", str(bindir / "uname"),
                            str(HERE / "uname.c")], check=True, capture_output=True)
        (self.root / "system" / "build.prop").write_text(
            "".join(f"{k}={v}\n" for k, v in props.items()))
        self._write_cpus()

    def _write_cpus(self) -> None:
        # The CPUs this process may use, split into a little and a big cluster, so the probe
        # finds big.LITTLE and `taskset <big mask>` runs on real cores of this host.
        cpus = sorted(os.sched_getaffinity(0))
        big = self.big_cpus()
        sysfs = self.root / "sys"
        cpu_dir = sysfs / "devices" / "system" / "cpu"
        listing = ",".join(map(str, cpus))
        for name in ("online", "possible", "present"):
            _write(cpu_dir / name, listing)
        cpuinfo = []
        for cpu in cpus:
            khz = BIG_KHZ if cpu in big else LITTLE_KHZ
            freq = cpu_dir / f"cpu{cpu}" / "cpufreq"
            for name, value in (("cpuinfo_max_freq", khz), ("cpuinfo_min_freq", 300000),
                                ("scaling_max_freq", khz), ("scaling_cur_freq", khz),
                                ("scaling_governor", "schedutil")):
                _write(freq / name, value)
            cpuinfo.append(f"processor\t: {cpu}\nBogoMIPS\t: 38.40\nFeatures\t: {ARM_FEATURES}\n"
                           "CPU implementer\t: 0x51\nCPU architecture: 8\nCPU variant\t: 0x7\n"
                           f"CPU part\t: {'0x804' if cpu in big else '0x805'}\n"
                           "CPU revision\t: 14\n")
        cpuinfo.append("Hardware\t: Qualcomm Technologies, Inc SDM845\n")
        _write(self.root / "cpuinfo", "\n".join(cpuinfo))
        for zone, (kind, milli_c) in enumerate([("cpu0-silver-usr", 41200),
                                                ("cpu4-gold-usr", 43800),
                                                ("battery", 31000)]):
            _write(sysfs / "class" / "thermal" / f"thermal_zone{zone}" / "type", kind)
            _write(sysfs / "class" / "thermal" / f"thermal_zone{zone}" / "temp", milli_c)

    def big_cpus(self) -> list[int]:
        """The upper half of the CPUs this process may use (all of them when there is one)."""
        cpus = sorted(os.sched_getaffinity(0))
        return cpus[len(cpus) // 2:]

    def sandbox_args(self) -> list[str]:
        args = ["bwrap", "--unshare-user", "--uid", str(SHELL_UID), "--gid", str(SHELL_UID),
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "localhost",
                "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/lib", "/lib64", "/sbin", "/etc"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--proc", "/proc", "--ro-bind", str(self.root / "cpuinfo"), "/proc/cpuinfo",
                 "--dev", "/dev", "--tmpfs", "/tmp",
                 "--ro-bind", str(self.root / "sys"), "/sys",
                 "--ro-bind", str(self.root / "system"), "/system",
                 "--dir", "/data/local"]
        if self.data_bytes:
            args += ["--size", str(self.data_bytes), "--tmpfs", "/data/local/tmp"]
        else:
            args += ["--bind", str(self.data), "/data/local/tmp"]
        # The daemon's Python, and the libraries the host-built runner links (an NDK build for a
        # phone links them statically): both at their paths on this host.
        for folder in sorted({*_python_prefixes(), *_library_dirs(self.runner)}):
            if folder != "/usr" and not folder.startswith("/usr/"):
                args += ["--ro-bind", folder, folder]
        return args + ["--chdir", "/", "--clearenv", "--setenv", "PATH", "/system/bin"]

    def start(self, timeout_s: float = 20) -> None:
        self.build()
        log = self.root / "adbd.log"
        python = os.path.realpath(sys.executable)
        cmd = self.sandbox_args() + [python, "-I", "-S", "/system/bin/adbd.py", str(self.port)]
        if not self.shell_v2:
            cmd.append("--no-shell-v2")
        if self.fault:
            cmd += ["--fault", self.fault]
        if self.arch == "aarch64":
            cmd += ["--env", f"QEMU_LD_PREFIX={ARM_SYSROOT}", "--env", f"QEMU_CPU={QEMU_CPU}"]
            # A user namespace of our own whose binfmt_misc sends aarch64 programs to qemu; the
            # sandbox's namespace, nested in it, inherits that.
            binfmt = self.root / "binfmt_misc"
            binfmt.mkdir(exist_ok=True)
            cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                   f'mount -t binfmt_misc binfmt_misc "{binfmt}" && '
                   f"printf '%s\\n' '{BINFMT_AARCH64}' >\"{binfmt}/register\" && exec \"$@\"",
                   "sh", *cmd]
        with open(log, "a") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _wait(f"adbd of {self.serial} listening",
              lambda: self.process.poll() is not None or "listening" in log.read_text(),
              timeout_s, log)
        if self.process.poll() is not None:
            raise RuntimeError(f"adbd of {self.serial} exited: {log.read_text()[-800:]}")

    def connect(self, env: dict, timeout_s: float = 20) -> None:
        """`adb connect` it and wait until the server lists it as a ready device."""
        def ready():
            if device_state(env, self.serial) == "device":
                return True
            adb(env, "connect", self.serial)
            return device_state(env, self.serial) == "device"

        _wait(f"adb connect {self.serial}", ready, timeout_s, self.root / "adbd.log")

    def kill(self) -> None:
        """The phone vanishes: adbd and every command it runs die at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def _write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def _python_prefixes() -> set[str]:
    """The interpreter's installation, and the venv it runs from when that holds a copy."""
    return {sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parents[1])}


def _library_dirs(binary: Path) -> set[str]:
    """The folders of `binary`'s RUNPATH (the executorch wheel's libraries), for any CPU."""
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True).stdout
    found = set()
    for entry in re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[(.*)\]", out):
        for folder in entry.split(":"):
            if folder and os.path.isdir(folder):
                found.add(os.path.realpath(folder))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description="Start an emulated Android phone and `adb connect` "
                                "it to the adb server on ANDROID_ADB_SERVER_PORT (5037).")
    p.add_argument("--runner", type=Path, default=Path(os.environ.get(
        "FBNET_ANDROID_RUNNER", HERE.parents[1] / "android_app" / "build-host" / "fbnet_bench")),
        help="the runner the phone will be sent (android_app/build_host.sh's by default)")
    p.add_argument("--root", type=Path, help="where the phone's files live (default: a temp dir)")
    p.add_argument("--no-shell-v2", action="store_true", help="a phone before Android 7")
    args = p.parse_args()
    if missing_tools():
        sys.exit("error: missing " + ", ".join(missing_tools()))
    if not args.runner.is_file():
        sys.exit(f"error: no runner at {args.runner}; run android_app/build_host.sh")
    root = args.root or Path(tempfile.mkdtemp(prefix="emulated-phone-"))
    phone = Phone(root, args.runner, shell_v2=not args.no_shell_v2)
    phone.start()
    try:
        phone.connect(dict(os.environ))
        print(f"{phone.serial} is up (files in {root}); measure it with\n"
              f"  FBNET_ANDROID_RUNNER={args.runner} python -m profiler.run "
              f"--device android:{phone.serial} --resolution 32 --out /tmp/emulated.json\n"
              "Ctrl-C stops it.", flush=True)
        phone.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        phone.kill()


if __name__ == "__main__":
    main()
