"""Fast unit tests of the profiler: devices, protocol, transports, naming, stats, op classes,
and the CLI's bad-input paths (each one line, exit code 2)."""

import json
from pathlib import Path

import pytest

from fbnet.coverage import lut_workloads
from fbnet.errors import UserError
from fbnet.lut import LUT_SCHEMA
from profiler.backends import base
from profiler.backends.base import BackendOptions, LocalTransport, create_backend, sha256_file
from profiler.build import default_lut_path, reference_workload, warn_if_host_was_busy
from profiler.devices import PROFILES, DeviceProfile, resolve_device
from profiler.export import ArtifactCache, ExportJob
from profiler.measure import Stats, op_type
from profiler.noise import measure_chunk
from profiler.protocol import (BenchResult, InputSpec, Manifest, ProgramResult, ProgramSpec,
                               RunnerInfo, fill_pattern)
from profiler.settings import Settings
from fbnet.space import SpaceConfig


def test_device_registry():
    assert {"host", "s8", "pixel3", "iphone_x"} <= set(PROFILES)
    assert resolve_device("s8").kind == "android" and resolve_device("s8").matches_model("SM-G950U")
    assert not resolve_device("s8").matches_model("Pixel 3")
    assert resolve_device("iphone_x").matches_model("iPhone10,6")
    generic = resolve_device("android:abc,def")
    assert generic.kind == "android" and generic.serials == ("abc", "def")
    assert resolve_device("ios:00008").serials == ("00008",)
    for bad in ("nokia", "android:", "ios:a,b"):
        with pytest.raises(UserError):
            resolve_device(bad)


def test_backend_lookup_is_lazy_and_host_exists():
    backend = create_backend(resolve_device("host"), BackendOptions())
    assert backend.kind == "host"
    info = backend.prepare()
    assert info.name == "host" and info.cpu
    assert backend.runtime_info().name == "executorch"


def test_local_transport(tmp_path):
    t = LocalTransport(tmp_path / "dev")
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    t.push(src, "programs/a.bin")
    assert t.exists("programs/a.bin") and t.checksum("programs/a.bin") == sha256_file(src)
    assert t.checksum("programs/none") is None
    code, out = t.shell("cat programs/a.bin; exit 3")
    assert (code, out) == (3, "abc")
    t.pull("programs/a.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"abc"
    with pytest.raises(UserError):
        t.pull("missing", tmp_path / "x")


def test_protocol_round_trip(tmp_path):
    m = Manifest([ProgramSpec("k", "programs/a.pte", [InputSpec([1, 3, 8, 8])])], iters=7,
                 rounds=3)
    m.save(tmp_path / "manifest.json")
    back = Manifest.from_dict(json.loads((tmp_path / "manifest.json").read_text()))
    assert back == m and back.iters_per_round == 3
    r = BenchResult(RunnerInfo("fbnet_bench", threads=1),
                    programs=[ProgramResult("k", "a.pte", latencies_ms=[1.0, 2.0])])
    r.save(tmp_path / "result.json")
    assert BenchResult.load(tmp_path / "result.json") == r
    with pytest.raises(UserError):
        Manifest.from_dict({"schema": "x"})
    pattern = fill_pattern(300)
    assert pattern[0] == pytest.approx(-0.5) and pattern[255] == pytest.approx(-0.5)


def test_stats():
    s = Stats.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median_ms == 3.0 and s.min_ms == 1.0 and s.max_ms == 100.0 and s.n == 5
    assert s.p10_ms < s.median_ms < s.p90_ms


@pytest.mark.parametrize("name,context,expected", [
    ("Convolution (NHWC, F32) DWConv #1", "ConvBlock", "dwconv"),
    ("Fully Connected (NC, F32) GEMM #1", "ConvBlock", "conv_1x1"),
    ("Fully Connected (NC, F32) GEMM #1", "FC", "fc"),
    ("Convolution (NHWC, F32) IGEMM #1", "ConvNorm_kxk", "conv_kxk"),
    ("Convolution (NHWC, F32) IGEMM #1", "ConvBlock", "conv_1x1"),  # grouped 1x1
    ("Transpose (ND, X32) #2", "ConvBlock", "transpose"),
    ("Add (ND) #1", "ConvBlock", "add"),
    ("Mean (ND) Reduce2 #1", "AvgPool", "mean"),
    ("Static Reshape (NC) #1", "AvgPool", "other"),
    ("aten::convolution", "ConvNorm_kxk", "conv_kxk"),
])
def test_op_types(name, context, expected):
    assert op_type(name, context) == expected


def test_default_lut_names():
    s = Settings()
    # the user's own LUTs: never over a shipped one in luts/
    mine = Path("runs/luts")
    assert default_lut_path("host", 224, s) == mine / "host.json"
    assert default_lut_path("host", 32, s) == mine / "host_32.json"
    assert default_lut_path("host", 224, Settings(dtype="int8")) == mine / "host_int8.json"
    assert default_lut_path("android:X", 96, Settings(backend="portable", runtime="executorch")) \
        == mine / "android_X_96_portable.json"
    assert default_lut_path("host", 224, Settings(runtime="torchscript")) == \
        mine / "host_torchscript.json"


def test_lut_workloads_cover_common_classifiers():
    space = SpaceConfig.create(32)
    keys = {w.key for w in lut_workloads(space)}
    assert {"FC_Cin1504_Cout10", "FC_Cin1504_Cout100", "FC_Cin1504_Cout1000"} <= keys
    assert len(keys) == 112 + 2
    assert reference_workload(space).key in keys


def test_cache_ids_differ_by_settings(tmp_path):
    a = ExportJob("FC_Cin8_Cout2", (1, 8))
    assert a.artifact_id() == ExportJob("FC_Cin8_Cout2", (1, 8)).artifact_id()
    assert a.artifact_id() != ExportJob("FC_Cin8_Cout2", (1, 8), dtype="int8").artifact_id()
    assert a.artifact_id() != ExportJob("FC_Cin8_Cout2", (1, 8), backend="portable").artifact_id()
    cache = ArtifactCache(tmp_path / "c")
    assert cache.lookup(a) == (None, False)
    cache.folder(a).mkdir()
    (cache.folder(a) / "meta.json").write_text("{broken")
    assert cache.lookup(a) == (None, True) and not cache.folder(a).exists()


# --- bad input through the CLI: one line, exit 2 ------------------------------------------------
def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_unknown_device(cli):
    _one_line_error(cli("profiler.run", "--device", "nokia3310"), "unknown device")


def test_missing_backend_is_not_available_yet():
    profile = DeviceProfile("watch", "smartwatch", "a kind with no backend module")
    with pytest.raises(UserError, match="smartwatch backend .* is not available yet"):
        create_backend(profile, BackendOptions())


def test_default_path_is_never_a_shipped_lut():
    """A build without --out writes the user's own LUT (runs/luts/), never one of luts/."""
    s = Settings()
    for device, resolution in (("s8", 224), ("host", 32), ("iphone_x", 32)):
        assert default_lut_path(device, resolution, s).parent == Path("runs") / "luts"


def test_cli_unwritable_output(cli, tmp_path):
    (tmp_path / "afile").write_text("")  # a file where a folder should be: unwritable even as root
    _one_line_error(cli("profiler.run", "--resolution", "32", "--out",
                        str(tmp_path / "afile" / "x.json")), "cannot write")


def test_cli_partial_lut_needs_resume(cli, tmp_path):
    out = tmp_path / "partial.json"
    out.write_text(json.dumps({"schema": LUT_SCHEMA, "measurement": {"complete": False},
                               "entries": {}}))
    _one_line_error(cli("profiler.run", "--resolution", "32", "--out", str(out)), "--resume")


def test_cli_validate_missing_lut(cli, tmp_path):
    _one_line_error(cli("profiler.validate", "--lut", str(tmp_path / "none.json")),
                    "does not exist")


def test_job_hit_by_a_load_burst_is_remeasured():
    class Burst:
        """A device where the first two jobs run during a burst of other load (10x slower)."""

        def __init__(self):
            self.jobs = 0

        def push_artifacts(self, programs):
            pass

        def run_job(self, manifest):
            self.jobs += 1
            slow = 10.0 if self.jobs <= 2 else 1.0
            return BenchResult(RunnerInfo("fake"), programs=[
                ProgramResult(p.id, p.path, latencies_ms=[slow] * 4) for p in manifest.programs])

    class Art:
        def __init__(self, key):
            self.job = ExportJob(key, (1, 8))
            self.program = Path(f"/tmp/{key}.pte")

        def to_program(self):
            from profiler.backends.base import Program
            return Program(self.job.key, self.program, [InputSpec([1, 8])])

    backend = Burst()
    drift = {"medians_ms": [1.0]}  # an earlier job saw the reference at 1 ms
    results, ref_ms = measure_chunk(backend, [Art("FC_Cin8_Cout2"), Art("FC_Cin8_Cout4")],
                                    "FC_Cin8_Cout4", Settings(), drift)
    assert ref_ms == 1.0 and drift["retries"] == 2 and backend.jobs == 3
    assert results["FC_Cin8_Cout2"].latencies_ms == [1.0] * 4


def test_validate_refuses_a_lut_it_cannot_remeasure(cli):
    # the shipped S8 LUT is an estimate for Caffe2 int8: nothing on this host can re-measure it
    _one_line_error(cli("profiler.validate", "--lut", "luts/s8.json", "--device", "host"),
                    "cannot re-measure")


def test_busy_host_gets_a_warning_quiet_host_and_phones_none(capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    warn_if_host_was_busy("host", {"load_avg_1m_start": 1.35, "load_avg_1m_end": 3.03})
    assert "host was busy" in capsys.readouterr().err
    warn_if_host_was_busy("host", {"load_avg_1m_start": 1.0, "load_avg_1m_end": 1.2})
    warn_if_host_was_busy("android", {"load_avg_1m_start": 5.0, "load_avg_1m_end": 5.0})
    assert capsys.readouterr().err == ""


def test_a_phone_rests_its_cool_down_between_jobs(monkeypatch):
    """Most jobs of a build hold one round, so the profile's cool-down between rounds is also
    given between jobs: the second job waits out what is left of it, the first does not."""
    class Phone(base.Backend):
        prepare = push_artifacts = run_job = runtime_info = None

    slept = []
    clock = iter([10.0, 10.25])  # the first job ends at 10.0 s, the second starts at 10.25 s
    monkeypatch.setattr(base.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(base.time, "sleep", slept.append)
    phone = Phone(resolve_device("s8"), BackendOptions(runner="native"))
    assert phone.profile.cooldown_s == 1.0
    phone.rest_between_jobs()
    assert slept == []
    phone.job_ended()
    phone.rest_between_jobs()
    assert slept == [pytest.approx(0.75)]
