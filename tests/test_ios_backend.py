"""iOS backend (profiler/backends/ios.py).

Fast tests drive the job protocol (push, launch, done marker, pull) through scripted
transports. The end-to-end test runs the whole backend over `LocalAppTransport`
(tests/ios_fakes.py), which plays the iOS app with the host-built native runner
(android_app/build_host.sh: the same C++ core the app links), on real exported programs, and
turns the result into a LUT that fbnet.lut loads.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fbnet.errors import UserError
from fbnet.lut import Lut, LutEntry, Measurement, Provenance, load_lut
from profiler.backends import ios
from profiler.backends.base import BackendOptions, TransportError
from profiler.backends.ios import DoneMarker, IosBackend, IosDevice, IosTransport
from profiler.devices import PROFILES, resolve_device
from profiler.protocol import InputSpec, Manifest, ProgramSpec
from tests.ios_fakes import LocalAppTransport

ROOT = Path(__file__).resolve().parents[1]


# --- scripted transport -----------------------------------------------------------------------
class ScriptedTransport(IosTransport):
    """Documents in a dict; `app` decides what a launch leaves behind."""

    def __init__(self, app=None, installed=True, product_type="iPhone10,3"):
        self.files: dict[str, bytes] = {}
        self.app = app
        self.installed = installed
        self.product_type = product_type
        self.pushes: list[str] = []
        self.installs: list[Path] = []
        self.running = False
        self.closed = False

    def connect(self, udid, models, profile_name):
        return IosDevice(udid or "UDID1", self.product_type, "16.7.10", "test phone", "20H350")

    def app_installed(self):
        return self.installed

    def install_app(self, app):
        self.installs.append(Path(app))
        self.installed = True

    def push(self, local, remote):
        self.pushes.append(remote)
        self.files[remote] = Path(local).read_bytes()

    def pull(self, remote, local):
        if remote not in self.files:
            raise TransportError(f"Documents/{remote} does not exist")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        Path(local).write_bytes(self.files[remote])

    def exists(self, remote):
        return any(k == remote or k.startswith(remote + "/") for k in self.files)

    def remove(self, remote):
        for k in [k for k in self.files if k == remote or k.startswith(remote + "/")]:
            del self.files[k]

    def read_text(self, remote):
        return self.files[remote].decode() if remote in self.files else None

    def launch(self, environment):
        if self.app:
            self.app(self, environment["FBNET_JOB_ID"])

    def app_running(self):
        return self.running

    def close(self):
        self.closed = True


def finish(transport, job_id, exit_code=0, error=None, programs=None):
    manifest = json.loads(transport.files["manifest.json"])
    programs = programs if programs is not None else [
        {"id": p["id"], "path": p["path"], "status": "ok", "error": None, "load_ms": 1.0,
         "latencies_ms": [0.5, 0.4, 0.6], "rounds": [[0.5, 0.4, 0.6]], "etdump": None}
        for p in manifest["programs"]]
    result = {"schema": "fbnet-bench-result/1",
              "runner": {"name": "fbnet_bench", "runtime": "executorch",
                         "runtime_version": "1.5.1", "threads": 1},
              "device": {"cpu_model": "Apple A11 (iPhone10,3)", "cores": 6},
              "programs": programs, "started": "t0", "finished": "t1"}
    transport.files["result.json"] = json.dumps(result).encode()
    transport.files["done"] = json.dumps({"exit_code": exit_code, "error": error,
                                          "job_id": job_id}).encode()


def make_backend(transport, tmp_path, **options) -> IosBackend:
    backend = IosBackend(PROFILES["iphone_x"], BackendOptions(workdir=tmp_path / "work",
                                                               **options), transport)
    backend.poll_s = 0.0
    backend.alive_check_s = 0.0
    return backend


def tiny_manifest(tmp_path, n=2) -> Manifest:
    specs = []
    for i in range(n):
        path = tmp_path / f"prog{i}.pte"
        path.write_bytes(f"program {i}".encode())
        specs.append(ProgramSpec(f"FC_Cin{8 + i}_Cout10", str(path), [InputSpec([1, 8 + i])]))
    return Manifest(specs, warmup=1, iters=3, rounds=1)


# --- fast tests -------------------------------------------------------------------------------
def test_iphone_soc():
    assert ios.iphone_soc("iPhone10,3") == "Apple A11 Bionic"
    assert ios.iphone_soc("iPhone16,1") == "Apple A17 Pro"
    assert ios.iphone_soc("iPad8,1") is None
    assert ios.iphone_soc(None) is None


def test_done_marker_parse():
    marker = DoneMarker.parse('{"exit_code": 1, "error": null, "job_id": "abc"}')
    assert (marker.exit_code, marker.error, marker.job_id) == (1, None, "abc")
    with pytest.raises(TransportError, match="malformed"):
        DoneMarker.parse("not json")


def test_pmd3_errors_explained_in_one_line():
    locked = type("PasswordRequiredError", (Exception,), {})("device is locked")
    text = ios.explain_pmd3_error(locked)
    assert "unlock" in text and "\n" not in text
    unknown = type("SomethingNew", (Exception,), {})()
    assert "usbmux list" in ios.explain_pmd3_error(unknown)


def test_missing_pymobiledevice3_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymobiledevice3", None)  # import fails
    with pytest.raises(UserError, match=r"pip install -e '\.\[ios\]'"):
        ios.Pmd3Transport("org.example.App")


def test_prepare_reads_the_phone(tmp_path):
    backend = make_backend(ScriptedTransport(), tmp_path)
    info = backend.prepare()
    assert (info.name, info.model, info.soc, info.os) == ("iphone_x", "iPhone10,3",
                                                           "Apple A11 Bionic", "iOS 16.7.10")
    assert info.extra["udid"] == "UDID1" and info.extra["app"] == ios.DEFAULT_BUNDLE_ID


def test_missing_app_is_a_user_error_or_installed(tmp_path, monkeypatch):
    monkeypatch.delenv("FBNET_IOS_APP", raising=False)
    missing = ScriptedTransport(installed=False)
    with pytest.raises(UserError, match="ios_app/README.md"):
        make_backend(missing, tmp_path).prepare()
    assert missing.closed  # a failed prepare() releases the phone
    app = tmp_path / "FbnetBench.ipa"
    app.write_bytes(b"ipa")
    transport = ScriptedTransport(installed=False)
    make_backend(transport, tmp_path, ios_app=str(app)).prepare()
    assert transport.installs == [app]


def test_job_round_trip_and_program_cache(tmp_path):
    transport = ScriptedTransport(app=finish)
    backend = make_backend(transport, tmp_path)
    manifest = tiny_manifest(tmp_path)
    with backend:
        result = backend.run_job(manifest)
        assert [p.id for p in result.programs] == [s.id for s in manifest.programs]
        assert [p.path for p in result.programs] == [s.path for s in manifest.programs]
        assert result.device["product_type"] == "iPhone10,3"
        sent = json.loads(transport.files["manifest.json"])
        assert all(p["path"].startswith("programs/") for p in sent["programs"])
        assert sent["cooldown_s"] == PROFILES["iphone_x"].cooldown_s
        pushed_programs = [p for p in transport.pushes if p.startswith("programs/")]
        assert len(pushed_programs) == 2
        backend.run_job(manifest)  # the programs are there already: only the manifest moves
        assert [p for p in transport.pushes if p.startswith("programs/")] == pushed_programs
        copied = backend.pull_results(tmp_path / "raw")
        assert {p.name for p in copied} == {"result.json"}
    # cleanup: job files gone, programs kept for the next run, connection closed
    assert set(transport.files) == {p for p in pushed_programs}
    assert transport.closed
    assert backend.device_info.extra["jobs"][0]["programs"] == 2


def test_stale_done_marker_is_ignored_and_timeout_reported(tmp_path):
    def stale(transport, job_id):
        finish(transport, "an-older-job")
        transport.running = True  # still "running" but never finishes this job

    backend = make_backend(ScriptedTransport(app=stale), tmp_path, timeout_s=0.2)
    backend.prepare()
    with pytest.raises(TransportError, match="did not finish within"):
        backend.run_job(tiny_manifest(tmp_path))


def test_app_that_dies_without_finishing(tmp_path):
    backend = make_backend(ScriptedTransport(app=lambda t, j: None), tmp_path, timeout_s=30)
    backend.prepare()
    with pytest.raises(TransportError, match="stopped without finishing"):
        backend.run_job(tiny_manifest(tmp_path))


def test_rejected_manifest_reports_the_apps_reason(tmp_path):
    def reject(transport, job_id):
        transport.files["done"] = json.dumps({"exit_code": 2, "job_id": job_id,
                                              "error": "programs[0].inputs: bad"}).encode()

    backend = make_backend(ScriptedTransport(app=reject), tmp_path)
    backend.prepare()
    with pytest.raises(TransportError, match=r"rejected the job \(exit 2\): programs\[0\]"):
        backend.run_job(tiny_manifest(tmp_path))


def test_ios_udid_profile_selects_that_phone(tmp_path):
    seen = {}

    class Recording(ScriptedTransport):
        def connect(self, udid, models, profile_name):
            seen.update(udid=udid, models=models)
            return super().connect(udid, models, profile_name)

    profile = resolve_device("ios:00008030-001A")
    backend = IosBackend(profile, BackendOptions(workdir=tmp_path), Recording())
    backend.prepare()
    assert seen == {"udid": "00008030-001A", "models": ()}


def test_without_a_phone_the_cli_says_what_is_missing():
    """No phone (and, here, no pymobiledevice3): one line saying what to set up, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "profiler.run", "--device", "iphone_x",
                           "--resolution", "32", "--out", "/nonexistent/never-written.json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr
    try:
        import pymobiledevice3  # noqa: F401
        assert "usbmuxd" in err[0] or "no iPhone" in err[0]
    except ImportError:
        assert "pip install -e '.[ios]'" in err[0]
    assert "Traceback" not in proc.stderr


# --- end to end: the backend over the local stand-in of the app ---------------------------------
@pytest.fixture(scope="module")
def native_runner() -> Path:
    proc = subprocess.run(["bash", str(ROOT / "android_app" / "build_host.sh")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_local_app_end_to_end_produces_a_valid_lut(native_runner, tmp_path):
    from fbnet.space import SpaceConfig
    from fbnet.workloads import parse_key, space_workloads, workload_kind
    from profiler.export import ArtifactCache, ExportJob, export_all
    from profiler.measure import Stats, parse_etdump

    space = SpaceConfig(resolution=32)
    workloads = space_workloads(space)[:3]  # stem conv + two 16-channel candidates
    jobs = [ExportJob(w.key, tuple(w.input_shape)) for w in workloads]
    artifacts, stats = export_all(jobs, ArtifactCache(ROOT / ".cache" / "artifacts"), workers=1)
    assert not stats.failures
    programs = [artifacts[w.key].to_program() for w in workloads]

    transport = LocalAppTransport(tmp_path / "Documents", native_runner)
    backend = IosBackend(PROFILES["iphone_x"], BackendOptions(workdir=tmp_path / "work"),
                         transport)
    backend.poll_s = 0.05
    manifest = Manifest([ProgramSpec(p.id, str(p.path), p.inputs) for p in programs],
                        warmup=2, iters=6, rounds=2, etdump=True, etdump_iters=3)
    with backend:
        backend.push_artifacts(programs)
        result = backend.run_job(manifest)
        runtime = backend.runtime_info()
        assert transport.launches == 1
    assert sorted(p.name for p in (tmp_path / "Documents").iterdir()) == ["programs"]

    entries = {}
    for prog, workload in zip(result.programs, workloads):
        assert prog.ok, prog.error
        assert len(prog.latencies_ms) == 6 and len(prog.rounds) == 2
        assert Path(prog.etdump).is_file()
        breakdown = parse_etdump(Path(prog.etdump), artifacts[prog.id].etrecord, manifest.warmup,
                                 workload_kind(parse_key(prog.id)))
        assert breakdown.ops, f"no operators in the ETDump of {prog.id}"
        s = Stats.of(prog.latencies_ms)
        entries[prog.id] = LutEntry(s.median_ms, s.mean_ms, s.std_ms, s.p10_ms, s.p90_ms,
                                    s.min_ms, s.max_ms, s.n, ops=breakdown.ops)
    assert runtime.version == "1.5.1"
    lut = Lut(device=backend.device_info, runtime=runtime,
              provenance=Provenance("measured", {"backend": "ios", "app": ios.DEFAULT_BUNDLE_ID,
                                                 "runner": result.runner.name}),
              entries=entries, space=space,
              measurement=Measurement(warmup=2, iters=6, rounds=2))
    lut.save(tmp_path / "iphone_x_32.json")
    loaded = load_lut(tmp_path / "iphone_x_32.json")
    assert loaded.device.model == "iPhone10,3"
    assert set(loaded.entries) == {w.key for w in workloads}
    assert all(e.latency_ms > 0 and e.ops for e in loaded.entries.values())


# --- the real pymobiledevice3 client against a stand-in usbmuxd (only with the `ios` extra) -----
def _serve_usbmuxd(sock_path: Path, devices: list[dict]):
    """A plist-protocol usbmuxd on a unix socket that answers ReadBUID and ListDevices."""
    import plistlib
    import socket
    import struct
    import threading

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(8)

    def handle(conn):
        with conn:
            while True:
                header = conn.recv(16, socket.MSG_WAITALL)
                if len(header) < 16:
                    return
                size, version, message, tag = struct.unpack("<4I", header)
                request = plistlib.loads(conn.recv(size - 16, socket.MSG_WAITALL))
                if request["MessageType"] == "ReadBUID":
                    reply = {"BUID": "00000000-0000-0000-0000-000000000000"}
                elif request["MessageType"] == "ListDevices":
                    reply = {"DeviceList": devices}
                else:
                    reply = {"MessageType": "Result", "Number": 3}  # device not found
                body = plistlib.dumps(reply)
                conn.sendall(struct.pack("<4I", 16 + len(body), 1, 8, tag) + body)

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server


def test_real_client_no_phone_attached(tmp_path, monkeypatch):
    pytest.importorskip("pymobiledevice3")
    sock = tmp_path / "usbmuxd.sock"
    server = _serve_usbmuxd(sock, devices=[])
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(sock))
    transport = ios.Pmd3Transport(ios.DEFAULT_BUNDLE_ID)
    try:
        with pytest.raises(UserError, match="no iPhone found on USB for --device iphone_x"):
            transport.connect(None, PROFILES["iphone_x"].models, "iphone_x")
        with pytest.raises(UserError, match="no iPhone with UDID 0000AAAA"):
            transport.connect("0000AAAA", (), "ios:0000AAAA")
    finally:
        transport.close()
        server.close()


# --- every pymobiledevice3 name the backend uses, in the installed (pinned) version ----------
# (module, attribute path, keyword arguments the backend passes, awaited by the backend)
PMD3_API = [
    ("usbmux", "list_devices", (), True),
    ("usbmux", "MuxDevice.is_usb", (), None),
    ("lockdown", "create_using_usbmux", ("serial", "autopair", "pair_timeout"), True),
    ("lockdown", "LockdownClient.product_version", (), None),
    ("lockdown", "LockdownClient.product_build_version", (), None),
    ("lockdown", "LockdownClient.has_developer_mode", (), None),
    ("lockdown", "LockdownClient.get_developer_mode_status", (), True),
    ("lockdown", "LockdownClient.close", (), True),
    ("services.mobile_image_mounter", "MobileImageMounterService.is_image_mounted",
     ("image_type",), True),
    ("services.mobile_image_mounter", "MobileImageMounterService.__aenter__", (), True),
    ("tunneld.api", "get_tunneld_device_by_udid", ("udid",), True),
    ("remote.remote_service_discovery", "RemoteServiceDiscoveryService.close", (), True),
    ("remote.userspace_tunnel", "UserspaceRsdTunnel", ("serial",), None),
    ("remote.userspace_tunnel", "UserspaceRsdTunnel.__aenter__", (), True),
    ("services.installation_proxy", "InstallationProxyService.get_apps",
     ("bundle_identifiers",), True),
    ("services.installation_proxy", "InstallationProxyService.install_from_local",
     ("package_path", "developer"), True),
    ("services.house_arrest", "HouseArrestService.create",
     ("lockdown", "bundle_id", "documents_only"), True),
    ("services.house_arrest", "HouseArrestService.__aenter__", (), True),
    ("services.house_arrest", "HouseArrestService.makedirs", ("filename",), True),
    ("services.house_arrest", "HouseArrestService.set_file_contents", ("filename", "data"),
     True),
    ("services.house_arrest", "HouseArrestService.get_file_contents", ("filename",), True),
    ("services.house_arrest", "HouseArrestService.exists", ("filename",), True),
    ("services.house_arrest", "HouseArrestService.rm", ("filename", "force"), True),
    ("services.dvt.instruments.dvt_provider", "DvtProvider.__aenter__", (), True),
    ("services.dvt.instruments.process_control", "ProcessControl.__aenter__", (), True),
    ("services.dvt.instruments.process_control", "ProcessControl.launch",
     ("bundle_id", "environment", "kill_existing"), True),
    ("services.dvt.instruments.process_control",
     "ProcessControl.process_identifier_for_bundle_identifier", (), True),
    ("exceptions", "PyMobileDevice3Exception", (), None),
    ("exceptions", "ConnectionFailedToUsbmuxdError", (), None),
    ("exceptions", "AppNotInstalledError", (), None),
    ("exceptions", "TunneldConnectionError", (), None),
]


@pytest.mark.parametrize("module,path,kwargs,awaited", PMD3_API,
                         ids=[f"{m}.{p}" for m, p, _, _ in PMD3_API])
def test_pymobiledevice3_has_what_the_backend_calls(module, path, kwargs, awaited):
    pytest.importorskip("pymobiledevice3")
    obj = importlib.import_module(f"pymobiledevice3.{module}")
    for name in path.split("."):
        assert hasattr(obj, name), f"pymobiledevice3.{module} has no {path}"
        obj = getattr(obj, name)
    if isinstance(obj, property):
        return
    func = inspect.unwrap(obj)  # AFC methods are wrapped by a path-converting decorator
    if kwargs:
        params = inspect.signature(func).parameters
        assert set(kwargs) <= set(params), f"{path}{inspect.signature(func)} lacks {kwargs}"
    if awaited is not None:
        assert inspect.iscoroutinefunction(func) == awaited, f"{path} is awaited by the backend"


def test_pymobiledevice3_lockdown_fields_the_backend_reads():
    """udid, product_type and all_values are instance fields that connecting fills in."""
    lockdown = pytest.importorskip("pymobiledevice3.lockdown")
    source = inspect.getsource(lockdown.LockdownClient)
    for field in ("udid", "product_type", "all_values"):
        assert f"self.{field} = " in source, field
