"""A phone's adb daemon (adbd) for tests: the device side of the adb wire protocol over TCP,
which a real adb server reaches with `adb connect 127.0.0.1:PORT`.

Speaks what the profiler's Android path uses:
- CNXN without AUTH (as a phone with `ro.adb.secure=0`), banner with the phone's product
  properties and the `shell_v2` feature;
- streams: OPEN / OKAY / WRTE / CLSE, one WRTE in flight per stream until the host's OKAY;
- `shell:CMD` (protocol v1: stdout and stderr merged, the stream closes when the command ends);
- `shell,v2[,ARGS]:CMD` (packets: stdout 1, stderr 2, exit status 3);
- `sync:` with STAT, LIST, SEND, RECV and QUIT.
Every command runs as `/system/bin/sh -c CMD` from `/`, with an adb shell's environment.

Standard library only: it runs inside the sandbox (tests/emulated_phone/phone.py), whose
/system/build.prop supplies the banner.

    python adbd.py PORT [--no-shell-v2] [--env NAME=VALUE ...]
                   [--fault PHASE[@TEXT][#N][:BYTES][:MODE]]
      --no-shell-v2: a phone before Android 7; --env: added to every command's environment;
      --fault: the connection fails at a chosen moment (see Fault)
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

A_CNXN, A_OPEN, A_OKAY = 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE = 0x45534C43, 0x45545257
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
SHELL = "/system/bin/sh"
BUILD_PROP = "/system/build.prop"
# An adb shell's environment on Android: toybox tools in /system/bin, scratch in /data/local/tmp.
SHELL_ENV = {"PATH": "/system/bin:/system/xbin:/vendor/bin", "HOME": "/", "USER": "shell",
             "ANDROID_ROOT": "/system", "ANDROID_DATA": "/data", "TMPDIR": "/data/local/tmp"}
# shell v2 packet ids
STDOUT, STDERR, EXIT = 1, 2, 3


def read_props(path: str = BUILD_PROP) -> dict[str, str]:
    props = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                props[key] = value
    return props


def banner(props: dict[str, str], shell_v2: bool) -> bytes:
    fields = [f"ro.product.{k}={props.get('ro.product.' + k, '')}"
              for k in ("name", "model", "device")]
    return ("device::" + ";".join(fields) + ";features=" + ("shell_v2" if shell_v2 else "")
            ).encode()


class Closed(Exception):
    """The stream or the connection went away."""


PHASES = ("stat", "send", "recv", "shell-v1", "shell-v2")
MODES = ("close", "reset", "exit")


@dataclass
class Fault:
    """The connection fails the `nth` time `phase` is reached (for a path that contains
    `text`, where one is given), after `keep_bytes` bytes.

    Phases: `stat` (a sync STAT reply: a push stats its destination first, and again after the
    data with check=True), `send` (the data of a push, counted as the daemon receives it),
    `recv` (the data of a pull), `shell-v1` and `shell-v2` (a command's output). Modes: `close`
    (the daemon closes the connection: a half-sent reply), `reset` (a TCP reset), `exit` (the
    daemon dies with every command it runs: the phone vanishes). It fires once, so a host that
    reconnects finds a working phone. Deterministic: it is counted, never timed.
    """

    phase: str
    text: str = ""
    nth: int = 1
    keep_bytes: int = 0
    mode: str = "close"
    seen: int = 0
    fired: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Fault":
        head, *rest = spec.split(":")
        head, _, nth = head.partition("#")
        phase, _, text = head.partition("@")
        fault = cls(phase, text, int(nth or 1), int(rest[0]) if rest else 0,
                    rest[1] if len(rest) > 1 else "close")
        if fault.phase not in PHASES or fault.mode not in MODES or fault.nth < 1:
            raise SystemExit(f"bad --fault {spec!r}: PHASE[@TEXT][#N][:BYTES][:MODE], phases "
                             f"{', '.join(PHASES)}, modes {', '.join(MODES)}")
        return fault

    def reached(self, phase: str, path: str) -> bool:
        """Count one arrival at `phase`; True when this is the one that fails."""
        if self.fired or phase != self.phase or self.text not in path:
            return False
        self.seen += 1
        self.fired = self.seen == self.nth
        return self.fired


FAULT: Fault | None = None


def arm(stream: "Stream", phase: str, path: str = "") -> None:
    """Make `stream` fail as --fault says if this arrival at `phase` (with `path`, a sync
    request's file or a command) is the one."""
    if FAULT is not None and FAULT.reached(phase, path):
        stream.fault = FAULT


class Stream:
    """One adb stream: writes wait for the host's OKAY; bytes the host sends queue up."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.cond = threading.Condition()
        self.can_write = True
        self.closed = False
        self.inbox = bytearray()
        self.process: subprocess.Popen | None = None
        self.fault: Fault | None = None  # armed: the next write (or receive) breaks the link

    # -- from the host
    def on_okay(self) -> None:
        with self.cond:
            self.can_write = True
            self.cond.notify_all()

    def on_data(self, data: bytes) -> None:
        with self.cond:
            self.inbox += data
            self.cond.notify_all()

    def on_close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.process is not None and self.process.poll() is None:
            try:  # as adbd does when the host goes away: hang up the command's process group
                os.killpg(self.process.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    # -- to the host
    def write(self, data: bytes) -> None:
        if self.fault is not None:
            self._send_raw(data[:self.fault.keep_bytes])
            self.conn.fail(self.fault.mode)
            raise Closed()
        self._send_raw(data)

    def _send_raw(self, data: bytes) -> None:
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            with self.cond:
                while not self.can_write and not self.closed:
                    self.cond.wait()
                if self.closed:
                    raise Closed()
                self.can_write = False
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + step])

    def read(self, n: int) -> bytes:
        with self.cond:
            while len(self.inbox) < n and not self.closed:
                self.cond.wait()
            if len(self.inbox) < n:
                raise Closed()
            data = bytes(self.inbox[:n])
            del self.inbox[:n]
            return data

    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        self.conn.streams.pop(self.local_id, None)
        try:
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        except OSError:
            pass


class Connection:
    """One adb server's connection: the message loop and its streams."""

    def __init__(self, sock: socket.socket, banner_bytes: bytes):
        self.sock = sock
        self.banner = banner_bytes
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.max_payload = MAX_PAYLOAD

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                             command ^ 0xFFFFFFFF)
        with self.send_lock:
            self.sock.sendall(header + data)

    def fail(self, mode: str) -> None:
        """End the connection as a fault does: FIN after what was sent, a reset, or death."""
        if mode == "exit":
            os._exit(1)
        if mode == "reset":  # linger 0: close() sends RST instead of FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:  # wakes serve(), which closes the socket
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed()
            buf += chunk
        return bytes(buf)

    def serve(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _, _ = struct.unpack("<6I", self._recv(24))
                data = self._recv(length) if length else b""
                if command == A_CNXN:
                    self.max_payload = min(MAX_PAYLOAD, arg1)
                    self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.banner)
                elif command == A_OPEN:
                    self.open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
                elif command == A_OKAY and arg1 in self.streams:
                    self.streams[arg1].on_okay()
                elif command == A_WRTE and arg1 in self.streams:
                    self.streams[arg1].on_data(data)
                    self.send(A_OKAY, arg1, arg0)
                elif command == A_CLSE and arg1 in self.streams:
                    self.streams.pop(arg1).on_close()
        except (Closed, OSError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.on_close()
            self.sock.close()

    def open(self, remote_id: int, service: str) -> None:
        name, _, arg = service.partition(":")
        kind = name.split(",")[0]
        if kind not in ("shell", "sync") or (kind == "shell" and not arg):
            self.send(A_CLSE, 0, remote_id)  # unsupported service (or an interactive shell)
            return
        local_id, self.next_id = self.next_id, self.next_id + 1
        stream = Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        self.send(A_OKAY, local_id, remote_id)
        if kind == "sync":
            target = serve_sync
        else:
            target = serve_shell_v2 if "v2" in name.split(",")[1:] else serve_shell_v1
        threading.Thread(target=_guarded, args=(target, stream, arg), daemon=True).start()


def _guarded(target, stream: Stream, arg: str) -> None:
    try:
        target(stream, arg)
    except (Closed, OSError):
        pass
    finally:
        stream.close()


def _spawn(cmd: str, stderr) -> subprocess.Popen:
    return subprocess.Popen([SHELL, "-c", cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=stderr, cwd="/", env=SHELL_ENV, start_new_session=True)


def _exit_status(proc: subprocess.Popen) -> int:
    code = proc.wait()
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell reports


def serve_shell_v1(stream: Stream, cmd: str) -> None:
    proc = stream.process = _spawn(cmd, subprocess.STDOUT)
    arm(stream, "shell-v1", cmd)
    for chunk in iter(lambda: os.read(proc.stdout.fileno(), SYNC_DATA_MAX), b""):
        stream.write(chunk)
    proc.wait()


def serve_shell_v2(stream: Stream, cmd: str) -> None:
    proc = stream.process = _spawn(cmd, subprocess.PIPE)
    arm(stream, "shell-v2", cmd)
    packets: queue.Queue = queue.Queue()

    def pump(pipe, packet_id):
        for chunk in iter(lambda: os.read(pipe.fileno(), SYNC_DATA_MAX), b""):
            packets.put((packet_id, chunk))
        packets.put(None)

    for pipe, packet_id in ((proc.stdout, STDOUT), (proc.stderr, STDERR)):
        threading.Thread(target=pump, args=(pipe, packet_id), daemon=True).start()
    open_pipes = 2
    while open_pipes:
        item = packets.get()
        if item is None:
            open_pipes -= 1
            continue
        packet_id, chunk = item
        stream.write(struct.pack("<BI", packet_id, len(chunk)) + chunk)
    stream.write(struct.pack("<BIB", EXIT, 1, _exit_status(proc) & 0xFF))


def _sync_reply(stream: Stream, tag: bytes, *words: int, payload: bytes = b"") -> None:
    stream.write(tag + struct.pack(f"<{len(words)}I", *words) + payload)


def _fail(stream: Stream, message: str) -> None:
    data = message.encode()
    _sync_reply(stream, b"FAIL", len(data), payload=data)


def serve_sync(stream: Stream, _arg: str) -> None:
    while True:
        request, length = struct.unpack("<4sI", stream.read(8))
        if request == b"QUIT":
            return
        path = stream.read(length).decode("utf-8", "replace")
        if request == b"STAT":
            arm(stream, "stat", path)
            try:
                st = os.stat(path)
                _sync_reply(stream, b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF,
                            int(st.st_mtime))
            except OSError:
                _sync_reply(stream, b"STAT", 0, 0, 0)
        elif request == b"LIST":
            try:
                entries = list(os.scandir(path))
            except OSError:
                entries = []
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                name = entry.name.encode()
                _sync_reply(stream, b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF,
                            int(st.st_mtime), len(name), payload=name)
            _sync_reply(stream, b"DONE", 0, 0, 0, 0)
        elif request == b"SEND":
            receive_file(stream, path)
        elif request == b"RECV":
            arm(stream, "recv", path)
            send_file(stream, path)
        else:
            _fail(stream, f"unknown sync request {request!r}")
            return


def receive_file(stream: Stream, spec: str) -> None:
    """SEND: DATA chunks until DONE; on a write error the rest is read and dropped, then FAIL."""
    path, _, mode_text = spec.rpartition(",")
    mode = int(mode_text) if mode_text.isdigit() else 0o644
    error = None
    fd = -1
    try:
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IMODE(mode))
    except OSError as err:
        error = f"couldn't create file: {err.strerror}"
    arm(stream, "send", path)
    received = 0
    try:
        while True:
            tag, size = struct.unpack("<4sI", stream.read(8))
            if tag == b"DONE":
                mtime = size
                break
            if tag != b"DATA":
                error = error or f"bad sync data {tag!r}"
                return _fail(stream, error)
            data = stream.read(size)
            received += len(data)
            if stream.fault is not None and received > stream.fault.keep_bytes:
                stream.conn.fail(stream.fault.mode)  # the link breaks with the upload half done
                raise Closed()
            if error is None:
                try:
                    os.write(fd, data)
                except OSError as err:
                    error = f"write failed: {err.strerror}"
    finally:
        if fd >= 0:
            os.close(fd)
    if error:
        if fd >= 0:
            os.unlink(path)
        return _fail(stream, error)
    os.chmod(path, stat.S_IMODE(mode))
    os.utime(path, (mtime, mtime))
    _sync_reply(stream, b"OKAY", 0)


def send_file(stream: Stream, path: str) -> None:
    try:
        f = open(path, "rb")
    except OSError as err:
        return _fail(stream, err.strerror)
    with f:
        for chunk in iter(lambda: f.read(SYNC_DATA_MAX), b""):
            _sync_reply(stream, b"DATA", len(chunk), payload=chunk)
    _sync_reply(stream, b"DONE", 0)


def main() -> None:
    global FAULT
    port = int(sys.argv[1])
    banner_bytes = banner(read_props(), shell_v2="--no-shell-v2" not in sys.argv[2:])
    extra = sys.argv[2:]
    for flag, setting in zip(extra, extra[1:]):
        if flag == "--env":
            name, _, value = setting.partition("=")
            SHELL_ENV[name] = value
        elif flag == "--fault":
            FAULT = Fault.parse(setting)
    server = socket.create_server(("127.0.0.1", port))
    print(f"adbd listening on 127.0.0.1:{port}", flush=True)
    while True:
        sock, _ = server.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=Connection(sock, banner_bytes).serve, daemon=True).start()


if __name__ == "__main__":
    main()
