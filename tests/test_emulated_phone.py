"""The Android path against a live device: a real adb server (Debian's `adb`, or the one the
adbutils wheel bundles) connected over TCP to an emulated phone (tests/emulated_phone/: an adbd
in a bubblewrap sandbox, mksh as its shell), measured by `python -m profiler.run --device android:127.0.0.1:PORT` with the host-built
runner. What this leaves to a real phone is in docs/android.md ("The emulated phone").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulated_phone.phone import Phone, adb, adb_server, missing_tools, sandbox_error
from fbnet.coverage import lut_workloads
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from profiler.backends.adb_transport import AdbTransport, adb_client, find_adb_binary
from profiler.backends.runner import DEVICE_DIR, PhoneSession
from profiler.backends.base import TransportError
from profiler.export import ArtifactCache, ExportJob, export_all
from profiler.protocol import Manifest, ProgramSpec

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--resolution", "8", "--stage-depths", "1,1,1,1,1,1,1",
        "--stage-widths", "8,8,8,8,8,8,8"]
FAST = ["--warmup", "1", "--iters", "6", "--calibrate", "0", "--quiet"]
# Two rounds in one pass put the phone profile's 1 s cool-down inside every job: time to crash
# the runner.
SLOW_JOBS = ["--rounds", "2", "--passes", "1", "--chunk", "1"]
BLOCKS = ["ConvNorm_H8_W8_Cin3_Cout16_kernel3_stride1_group1",
          "ConvBlock_H8_W8_Cin8_Cout8_exp1_kernel3_stride1_group1",
          "ConvBlock_H8_W8_Cin8_Cout8_exp1_kernel5_stride1_group2",
          "Skip_H8_W8_Cin8_Cout8_stride1"]
# adbd dies after 100 bytes of the 3rd program uploaded: the reference block is the 1st (the
# run settles the phone with it), the first job's block the 2nd, so the phone vanishes in the
# middle of the second job's upload, after one finished entry.
VANISH_MID_UPLOAD = "send@.pte#3:100:exit"
PHONE_DIR = DEVICE_DIR.lstrip("/").removeprefix("data/local/tmp/")  # under Phone.data

_missing = missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason="an emulated phone needs "
                                + ", ".join(_missing) + "; `make setup` installs them as root")


@pytest.fixture(scope="module")
def adb_env(tmp_path_factory):
    why = sandbox_error()
    if why:
        pytest.skip(f"bubblewrap cannot make a sandbox here ({why}); unprivileged user "
                    "namespaces may be off (sysctl kernel.unprivileged_userns_clone=1)")
    with adb_server(find_adb_binary(), tmp_path_factory.mktemp("adb_home")) as env:
        yield env


@pytest.fixture(scope="module")
def cache():
    return ROOT / ".cache" / "artifacts"  # profiler.run's own cache: exported once, kept


@pytest.fixture
def phones(tmp_path, host_runner, adb_env):
    """Start emulated phones (connected to the adb server); all are killed afterwards."""
    started = []

    def start(name: str, **kw) -> Phone:
        phone = Phone(tmp_path / name, host_runner, **kw)
        phone.start()
        phone.connect(adb_env)
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.kill()
        adb(adb_env, "disconnect", phone.serial)


@pytest.fixture
def background():
    """Start `python -m profiler.run` without waiting; a run left over by a failure is killed."""
    runs = []

    def start(args: list[str], env: dict) -> subprocess.Popen:
        runs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
        return runs[-1]

    yield start
    for run in runs:
        if run.poll() is None:
            run.kill()
        run.communicate()


def profile_args(device: str, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "profiler.run", "--device", device, *TINY, *FAST, "--only",
            ",".join(BLOCKS), "--cache", str(cache), "--out", str(out), *(extra or ["--rounds",
                                                                                  "1"])]


def profile_env(adb_env: dict, runner: Path) -> dict:
    return dict(adb_env, FBNET_ANDROID_RUNNER=str(runner))


def run_profiler(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def one_line_error(proc) -> str:
    """The run failed as a user error: exit 2, one line, no traceback; returns that line."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.strip()][-1]


def entries(path: Path) -> dict:
    return json.loads(path.read_text())["entries"] if path.exists() else {}


def wait_for(what: str, condition, proc, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.02)


def test_profiler_run_measures_an_emulated_phone(tmp_path, phones, adb_env, host_runner,
                                                 cache, monkeypatch):
    phone = phones("a")
    # What answers: the adb server, the phone's shell and protocol
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_env["ANDROID_ADB_SERVER_PORT"])
    client = adb_client()
    assert client.server_version() >= 39
    transport = AdbTransport(client, phone.serial)
    assert transport.uses_shell_v2()
    assert "MIRBSD KSH" in transport.shell("echo $KSH_VERSION")[1]
    assert transport.shell("exit 3") == (3, "")

    env = profile_env(adb_env, host_runner)
    out = tmp_path / "phone.json"
    proc = run_profiler(profile_args(f"android:{phone.serial}", out, cache), env)
    assert proc.returncode == 0, proc.stderr
    lut = load_lut(out)
    info = lut.device
    assert (info.model, info.soc, info.os) == ("Pixel 3", "Qualcomm SDM845",
                                               "Android 12 (API 31)")
    assert "SDM845" in info.cpu and "2.803 GHz" in info.cpu
    assert set(info.extra["governor"]) == {"schedutil"}
    assert info.extra["big_cores"] == phone.big_cpus()
    assert info.extra["pinning"].startswith(f"taskset {info.extra['cpu_mask']} (cores ")
    assert info.extra["thermal_c"]["cpu4-gold-usr"] == 43.8
    assert lut.runtime.version == "1.5.1"
    assert set(lut.entries) == set(BLOCKS) and lut.measurement.complete
    for key, entry in lut.entries.items():
        assert entry.n >= 6 and entry.latency_ms > 0  # more where a noisy entry got more jobs
        if not key.startswith("Skip"):  # an identity block runs no operator
            assert entry.ops, f"no per-op breakdown (ETDump) for {key}"
    jobs = info.extra["jobs"]
    assert sum(p["pushed"] for job in jobs for p in job["phones"]) == len(BLOCKS) + 1  # + ref
    assert jobs[0]["phones"][0]["thermal_before_c"]["battery"] == 31.0
    # on the phone: the runner and the programs stay, the job's files are gone
    kept = phone.data / PHONE_DIR
    assert os.access(kept / "fbnet_bench", os.X_OK)
    assert len(list((kept / "programs").glob("*.pte"))) == len(BLOCKS) + 1
    assert not (kept / "result.json").exists() and not (kept / "runner.pid").exists()

    # A second phone joins: picking "the" Pixel 3 is now ambiguous, and both measure together;
    # the first has everything already, the second receives the runner and its share.
    second = phones("b")
    line = one_line_error(run_profiler(profile_args("pixel3", tmp_path / "x.json", cache), env))
    assert "2 devices match --device pixel3" in line and second.serial in line, line
    both = tmp_path / "two.json"
    proc = run_profiler(profile_args(f"android:{phone.serial},{second.serial}", both, cache),
                        env)
    assert proc.returncode == 0, proc.stderr
    lut = load_lut(both)
    assert lut.device.extra["serials"] == [phone.serial, second.serial]
    assert set(lut.entries) == set(BLOCKS)
    pushed = {}  # over every job: a build also runs settling and re-measuring jobs
    for job in lut.device.extra["jobs"]:
        for p in job["phones"]:
            pushed[p["serial"]] = pushed.get(p["serial"], 0) + p["pushed"]
    assert pushed[phone.serial] == 0 and pushed[second.serial] > 0
    assert os.access(second.data / PHONE_DIR / "fbnet_bench", os.X_OK)


def test_phone_without_shell_v2(tmp_path, phones, adb_env, host_runner, monkeypatch):
    """A phone before Android 7: the old shell protocol, exit status from adbutils' suffix."""
    phone = phones("old", shell_v2=False)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_env["ANDROID_ADB_SERVER_PORT"])
    transport = AdbTransport(adb_client(), phone.serial)
    assert not transport.uses_shell_v2()
    assert transport.shell("echo out; echo err >&2; exit 4") == (4, "out\nerr\n")
    session = PhoneSession(phone.serial, transport, host_runner, DEVICE_DIR, tmp_path / "work")
    probe = session.prepare()
    assert probe.model == "Pixel 3" and probe.big_cores() == phone.big_cpus()
    assert session.runner_version == "1.5.1" and session.mask
    assert session.thermal()["cpu0-silver-usr"] == 41.2
    session.cleanup()


# Each phase of an adb exchange, broken by the emulated adbd (adbd.Fault): what the phone has
# sent when the link fails, counted in bytes, never timed. The comment says what adbutils raised
# from there before AdbTransport mapped every failure of the link to TransportError.
PHASE_FAULTS = {
    # push stats its destination first: "ST" of "STAT", then the link closes (AssertionError)
    "push stat": ("stat#1:2", "push", True),
    # the data of the push: the link breaks after 5000 of its bytes arrive (an OSError, or
    # an AssertionError when the FIN wins the race with the host's writes)
    "push data": ("send:5000", "push", True),
    # check=True's stat after the data: "STAT" and 2 of its 12 bytes (struct.error)
    "check after push": ("stat#2:6", "push", True),
    # shell v1: 3 bytes of the output, then the link closes (the exit status is never read)
    "shell v1": ("shell-v1:3", "shell", False),
    # shell v2: a packet header and 3 of its bytes (EOFError from read_exact)
    "shell v2": ("shell-v2:8", "shell", True),
    # pull: a DATA header and 2 bytes of the file (AdbError "read chunk missing")
    "pull": ("recv:10", "pull", True),
    # a reset in the middle of a push, and the phone dying in the middle of a command
    "push data, reset": ("send:5000:reset", "push", True),
    "shell v2, phone gone": ("shell-v2:8:exit", "shell", True),
}


@pytest.mark.parametrize("phase", list(PHASE_FAULTS))
def test_a_link_that_fails_in_any_phase_is_one_transport_error(phase, tmp_path, phones, adb_env,
                                                                monkeypatch):
    fault, operation, shell_v2 = PHASE_FAULTS[phase]
    phone = phones("f", fault=fault, shell_v2=shell_v2)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_env["ANDROID_ADB_SERVER_PORT"])
    transport = AdbTransport(adb_client(), phone.serial)
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(64 * 1024))
    (phone.data / "on_phone.bin").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(TransportError, match=phone.serial):
        if operation == "push":
            transport.push(local, "/data/local/tmp/pushed.bin")
        elif operation == "pull":
            transport.pull("/data/local/tmp/on_phone.bin", tmp_path / "pulled.bin")
        else:
            transport.shell("echo the-output-of-a-command-on-the-phone; echo and-more")


def test_hung_job_is_stopped_over_adb(tmp_path, phones, adb_env, host_runner, cache,
                                      monkeypatch):
    """A job past its timeout: the shell v2 read times out, the runner is killed by its pid
    through a second adb shell, and the phone has no runner left."""
    phone = phones("h")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_env["ANDROID_ADB_SERVER_PORT"])
    space = SpaceConfig.create(8, stage_depths=(1,) * 7, stage_widths=(8,) * 7)
    block = next(w for w in lut_workloads(space) if w.key == BLOCKS[1])
    found, _ = export_all([ExportJob(block.key, tuple(block.input_shape))], ArtifactCache(cache),
                          workers=1)
    program = found[block.key].to_program()
    session = PhoneSession(phone.serial, AdbTransport(adb_client(), phone.serial), host_runner,
                           DEVICE_DIR, tmp_path / "work")
    session.prepare()
    manifest = Manifest([ProgramSpec(program.id, str(program.path), program.inputs)],
                        warmup=1, iters=10**8, rounds=1)
    with pytest.raises(TransportError, match=r"did not finish within 2 s and was stopped "
                                             r"\(pid \d+\)"):
        session.run(manifest, {program.id: program}, timeout_s=2)
    assert "fbnet_bench" not in adb(adb_env, "-s", phone.serial, "shell", "ps -A -o comm")


def test_vanished_then_full_phone_lose_nothing(tmp_path, phones, adb_env, host_runner, cache):
    """The phone vanishes mid-transfer (adbd dies in the middle of a later job's upload):
    finished entries stay. It comes back with /data full: the resumed run stops with a one-line
    error and keeps them. With space again, --resume finishes the LUT and measures only what
    was missing."""
    phone = phones("v", fault=VANISH_MID_UPLOAD)
    env = profile_env(adb_env, host_runner)
    out = tmp_path / "phone.json"
    # one program per job: the phone dies while the jobs after the first are pending
    args = profile_args(f"android:{phone.serial}", out, cache, "--rounds", "1", "--chunk", "1")
    resume = profile_args(f"android:{phone.serial}", out, cache, "--rounds", "1", "--resume")
    line = one_line_error(run_profiler(args, env))
    assert phone.serial in line and "cannot push" in line, line
    finished = entries(out)
    assert list(finished) == BLOCKS[:1]
    phone.kill()
    phone.fault = None

    phone.data_bytes = 64 * 1024  # a tmpfs smaller than the runner
    phone.start()
    phone.connect(adb_env)
    line = one_line_error(run_profiler(resume, env))
    assert "cannot push" in line and "free space" in line, line
    assert entries(out) == finished

    phone.kill()
    phone.data_bytes = None  # the phone's own storage again, with the runner already there
    phone.start()
    phone.connect(adb_env)
    proc = run_profiler(resume, env)
    assert proc.returncode == 0, proc.stderr
    done = entries(out)
    assert set(done) == set(BLOCKS)
    assert {k: done[k] for k in finished} == finished  # kept as measured


def test_runner_crash_keeps_finished_entries(tmp_path, phones, adb_env, host_runner, cache,
                                              background):
    phone = phones("c")
    env = profile_env(adb_env, host_runner)
    out = tmp_path / "phone.json"
    args = profile_args(f"android:{phone.serial}", out, cache, *SLOW_JOBS)
    run = background(args, env)
    wait_for("a finished entry", lambda: entries(out), run)
    # `kill` succeeds only on a live runner: a job that ends between reading its pid and the
    # kill is not taken for the crash, and the next job's runner is tried
    crash = (f"p=$(cat {DEVICE_DIR}/runner.pid 2>/dev/null) && kill -SEGV \"$p\" 2>/dev/null "
             "&& echo crashed")
    wait_for("a running runner crashed",
             lambda: "crashed" in adb(env, "-s", phone.serial, "shell", crash), run)
    stdout, stderr = run.communicate(timeout=300)
    line = one_line_error(subprocess.CompletedProcess(args, run.returncode, stdout, stderr))
    assert "the runner exited with code 139" in line, line  # 128 + SIGSEGV
    finished = entries(out)
    assert finished and len(finished) < len(BLOCKS)


@pytest.mark.skipif(os.environ.get("FBNET_ARM_TESTS") != "1",
                    reason="opt-in: FBNET_ARM_TESTS=1 builds the aarch64 runner and measures an "
                           "emulated arm64 phone under qemu")
def test_arm64_phone_under_qemu(tmp_path, adb_env, cache):
    """The aarch64 runner over the same adb path, on a phone whose programs run under qemu-user
    as a Cortex-A76. Its timings mean nothing (an emulator); what runs is the ARM build."""
    missing = missing_tools("aarch64")
    if missing:
        pytest.skip("an arm64 phone needs " + ", ".join(missing))
    build = subprocess.run(["bash", str(ROOT / "android_app" / "build_linux_aarch64.sh")],
                           capture_output=True, text=True, timeout=1800,
                           env=dict(os.environ, PYTHON=sys.executable))
    assert build.returncode == 0, build.stderr[-3000:]
    runner = Path(build.stdout.strip().splitlines()[-1])
    phone = Phone(tmp_path / "arm", runner, arch="aarch64")
    phone.start()
    try:
        phone.connect(adb_env)
        assert adb(adb_env, "-s", phone.serial, "shell", "uname -m").strip() == "aarch64"
        out = tmp_path / "arm.json"
        proc = run_profiler(profile_args(f"android:{phone.serial}", out, cache),
                            profile_env(adb_env, runner))
        assert proc.returncode == 0, proc.stderr
    finally:
        phone.kill()
    lut = load_lut(out)
    assert lut.device.extra["abi"] == "arm64-v8a" and lut.runtime.version == "1.5.1"
    assert set(lut.entries) == set(BLOCKS)
    assert all(e.ops for k, e in lut.entries.items() if not k.startswith("Skip"))
