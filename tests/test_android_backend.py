"""The Android backend, end to end, with no phone: the same commands, phone directory layout and
native runner, over a LocalTransport that executes on this host (see profiler/backends/runner.py).

Unit tests cover what is read from a phone (probe, thermal zones, core masks, ELF checks) from
text in the probe script's output format; the rest runs real exported programs with the
host-built fbnet_bench. The probe script itself runs in a real mksh, over an emulated phone's
getprop and sysfs, in tests/test_emulated_phone.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fbnet.errors import UserError
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from fbnet.workloads import fixed_parts
from profiler.backends.runner import (DEVICE_DIR, PROBE_SCRIPT, THERMAL_SCRIPT, PhoneSession,
                                      RunnerBackend, cpu_mask, elf_machine, merge_results,
                                      parse_cpu_list, parse_probe, parse_thermal,
                                      split_programs)
from profiler.backends.adb_transport import v1_command
from profiler.backends.base import BackendOptions, LocalTransport, TransportError
from profiler.devices import resolve_device
from profiler.protocol import Manifest, ProgramSpec

PHONE_DIR = DEVICE_DIR.lstrip("/")  # the phone's layout under each LocalTransport root

# What PROBE_SCRIPT prints on a Galaxy S8 (Exynos 8895: 4 big M2 + 4 little A53), written from
# the S8's published properties and clocks (SM-G950F, universal8895, 2.314/1.690 GHz). It is not
# a capture from a phone: none was at hand. What a real phone prints differently (a missing
# property, another cpufreq layout) is what running `profiler.run --device s8` on one checks.
S8_PROBE = """\
prop ro.product.model=SM-G950F
prop ro.product.manufacturer=samsung
prop ro.soc.manufacturer=
prop ro.soc.model=
prop ro.board.platform=universal8895
prop ro.hardware=samsungexynos8895
prop ro.build.version.release=9
prop ro.build.version.sdk=28
prop ro.product.cpu.abi=arm64-v8a
uname aarch64 4.4.111-16019454
online 0-7
cpuinfo  ARMv8 Processor rev 4 (v8l)
cpu 0 1690000 schedutil
cpu 1 1690000 schedutil
cpu 2 1690000 schedutil
cpu 3 1690000 schedutil
cpu 4 2314000 schedutil
cpu 5 2314000 schedutil
cpu 6 2314000 schedutil
cpu 7 2314000 schedutil
tool taskset
tool sha256sum
"""
S8_THERMAL = "AP 41000\nBAT 33500\ncpu 44000\ncpu 47000\nbroken xx\n"


# --- what is read from a phone ----------------------------------------------------------------
def test_probe_of_an_s8():
    probe = parse_probe(S8_PROBE)
    assert probe.model == "SM-G950F"
    assert probe.soc == "universal8895"
    assert probe.os == "Android 9 (API 28)"
    assert probe.big_cores() == [4, 5, 6, 7]
    assert cpu_mask(probe.big_cores()) == "f0"
    assert probe.fastest_cores(2) == [4, 5, 6, 7]
    assert len(probe.fastest_cores(6)) == 6 and {4, 5, 6, 7} <= set(probe.fastest_cores(6))
    assert probe.cpu_summary() == ("ARMv8 Processor rev 4 (v8l) (8 cores: 4x 2.314 GHz + "
                                   "4x 1.690 GHz)")
    assert resolve_device("s8").matches_model(probe.model)
    assert not resolve_device("pixel3").matches_model(probe.model)


def test_probe_without_frequencies_uses_online_cores():
    probe = parse_probe("uname x86_64 6.1\nonline 0-1\ncpu 0 - -\ncpu 1 - -\ncpu 2 - -\n")
    assert probe.big_cores() == [0, 1]  # cpu2 is offline
    assert probe.model is None and probe.os == "Linux 6.1"


def test_thermal_masks_and_cpu_lists():
    assert parse_thermal(S8_THERMAL) == {"AP": 41.0, "BAT": 33.5, "cpu": 44.0, "cpu#2": 47.0}
    assert parse_thermal("skin 38\n") == {"skin": 38.0}  # some phones report whole degrees
    assert parse_cpu_list("0-3,6") == [0, 1, 2, 3, 6]
    assert cpu_mask([0, 1, 2, 3, 6]) == "4f"
    assert cpu_mask([4, 5, 6, 7]) == "f0"


def test_probe_script_runs_in_a_posix_shell():
    # The same text goes to `adb shell`; on this host it must parse and find the cores.
    transport = LocalTransport(Path("/tmp"))
    code, out = transport.shell(PROBE_SCRIPT)
    assert code == 0, out
    probe = parse_probe(out)
    assert probe.machine and probe.cores and probe.big_cores()
    assert transport.shell(THERMAL_SCRIPT)[0] == 0


def test_elf_machine(tmp_path):
    arm = tmp_path / "arm64"
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (0xB7).to_bytes(2, "little"))
    assert elf_machine(arm) == "aarch64"
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert elf_machine(text) is None


def test_split_and_merge_keep_manifest_order():
    specs = [ProgramSpec(f"FC_Cin{i}_Cout10", f"p{i}.pte") for i in range(5)]
    shares = split_programs(specs, 2)
    assert [len(s) for s in shares] == [3, 2]
    assert sorted(p.id for s in shares for p in s) == sorted(p.id for p in specs)
    from profiler.protocol import BenchResult, ProgramResult, RunnerInfo

    results = [BenchResult(RunnerInfo("r"), {"serial": f"s{k}"},
                           [ProgramResult(p.id, p.path, latencies_ms=[1.0]) for p in share])
               for k, share in enumerate(shares)]
    merged = merge_results(Manifest(specs), results)
    assert [p.id for p in merged.programs] == [p.id for p in specs]
    assert [d["serial"] for d in merged.device["phones"]] == ["s0", "s1"]


# --- the whole backend over a local transport --------------------------------------------------
@pytest.fixture(scope="module")
def runner_bin(host_runner) -> Path:
    return host_runner


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Three real 32 px workloads exported to XNNPACK .pte files (stem, a block, classifier)."""
    from profiler.export import ArtifactCache, ExportJob, export_all

    from profiler.build import reference_workload

    space = SpaceConfig.create(32)
    parts = fixed_parts(space)
    # the block is profiler.run's drift reference, so a whole profiler.run exports nothing new
    chosen = [parts.stem, reference_workload(space), parts.classifier]
    jobs = [ExportJob(w.key, tuple(w.input_shape)) for w in chosen]
    found, stats = export_all(jobs, ArtifactCache(tmp_path_factory.mktemp("cache")), workers=1)
    assert not stats.failures, stats.failures
    return [found[w.key] for w in chosen]


@pytest.fixture(scope="module")
def programs(artifacts):
    return [a.to_program() for a in artifacts]


def _manifest(programs, **kw) -> Manifest:
    settings = dict(warmup=1, iters=6, rounds=2, etdump=False, cooldown_s=0.0)
    settings.update(kw)
    return Manifest([ProgramSpec(p.id, str(p.path), p.inputs) for p in programs], **settings)


def _backend(tmp_path, runner_bin, serials=("emu0",), transport_cls=LocalTransport,
             cooldown_s=0.0):
    # a phone profile's default cool-down between rounds, shortened so tests stay fast
    profile = replace(resolve_device("android:" + ",".join(serials)), cooldown_s=cooldown_s)
    sessions = [PhoneSession(s, transport_cls(tmp_path / s), runner_bin, PHONE_DIR,
                             tmp_path / "work") for s in serials]
    return RunnerBackend(profile, BackendOptions(runner="native"), sessions)


def test_two_emulated_phones_split_a_job(tmp_path, runner_bin, programs):
    backend = _backend(tmp_path, runner_bin, ("emu0", "emu1"))
    with backend:
        assert backend.device_info.extra["serials"] == ["emu0", "emu1"]
        assert backend.device_info.extra["pinning"].startswith("taskset ")
        backend.push_artifacts(programs)
        result = backend.run_job(_manifest(programs, etdump=True))
        assert [p.id for p in result.programs] == [p.id for p in programs]
        for prog in result.programs:
            assert prog.ok, prog.error
            assert len(prog.latencies_ms) == 6 and all(ms > 0 for ms in prog.latencies_ms)
            assert Path(prog.etdump).is_file()  # pulled back to this side
        job = backend.jobs[-1]
        assert [p["programs"] for p in job["phones"]] == [2, 1]
        for serial in ("emu0", "emu1"):  # the phone's layout, runner and programs in place
            phone = tmp_path / serial / PHONE_DIR
            assert os.access(phone / "fbnet_bench", os.X_OK)
            assert len(list((phone / "programs").glob("*.pte"))) == (2 if serial == "emu0" else 1)
        assert not (tmp_path / "emu0" / PHONE_DIR / "runner.pid").exists()  # only while running
        # the same job again pushes nothing: every file is known by checksum
        backend.run_job(_manifest(programs))
        assert all(p["pushed"] == 0 for p in backend.jobs[-1]["phones"])
    assert not (tmp_path / "emu0" / PHONE_DIR / "result.json").exists()  # cleaned up
    assert (tmp_path / "emu0" / PHONE_DIR / "fbnet_bench").exists()  # kept for the next run


def test_profiler_run_builds_a_valid_lut(tmp_path, runner_bin, artifacts, monkeypatch, capsys):
    """`python -m profiler.run --device android:emu0,emu1` end to end - device lookup aside, the
    two phones being LocalTransports - gives a LUT fbnet.lut loads, with per-op breakdowns
    from the pulled ETDumps and the phones recorded."""
    import profiler.backends.android as android
    from profiler import run

    def emulated_phones(profile, options):
        sessions = [PhoneSession(s, LocalTransport(tmp_path / s), runner_bin, PHONE_DIR,
                                 options.workdir, threads=options.threads)
                    for s in profile.serials]
        return RunnerBackend(replace(profile, cooldown_s=0.05), options, sessions)

    monkeypatch.setattr(android, "create_backend", emulated_phones)
    out = tmp_path / "android_32.json"
    keys = [a.job.key for a in artifacts]
    code = run.main(["--device", "android:emu0,emu1", "--resolution", "32", "--only",
                     ",".join(keys), "--warmup", "1", "--iters", "6", "--rounds", "3",
                     "--calibrate", "0", "--quiet", "--cache", str(artifacts[0].folder.parent),
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "0 exported" in capsys.readouterr().out
    lut = load_lut(out)
    assert lut.provenance.kind == "measured" and lut.runtime.name == "executorch"
    assert lut.runtime.version and lut.runtime.threads == 1
    assert lut.device.name == "android:emu0,emu1"
    assert lut.device.extra["serials"] == ["emu0", "emu1"]
    assert lut.device.extra["pinning"].startswith("taskset ")
    jobs = lut.device.extra["jobs"]
    assert jobs and all(p["seconds"] >= 0.1 for p in jobs[0]["phones"])  # 2 cool-downs each
    assert set(lut.entries) == set(keys)
    for key, entry in lut.entries.items():
        assert entry.n >= 6 and 0 < entry.min_ms <= entry.latency_ms <= entry.max_ms  # + noisy jobs
        assert entry.ops, f"no per-op breakdown for {key}"


def test_changed_program_on_phone_is_pushed_again(tmp_path, runner_bin, programs):
    with _backend(tmp_path, runner_bin) as backend:
        backend.push_artifacts(programs[:1])
        backend.run_job(_manifest(programs[:1]))
    pushed = next((tmp_path / "emu0" / PHONE_DIR / "programs").glob("*.pte"))
    pushed.write_bytes(b"truncated")
    with _backend(tmp_path, runner_bin) as backend:
        backend.push_artifacts(programs[:1])
        result = backend.run_job(_manifest(programs[:1]))
        assert backend.jobs[-1]["phones"][0]["pushed"] == 1
        assert result.programs[0].ok


def test_broken_program_fails_alone(tmp_path, runner_bin, programs):
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program")
    from profiler.backends.base import Program

    broken = Program("FC_Cin7_Cout3", bad, programs[-1].inputs)
    with _backend(tmp_path, runner_bin) as backend:
        backend.push_artifacts([broken, programs[-1]])
        result = backend.run_job(_manifest([broken, programs[-1]]))
    status = {p.id: p.status for p in result.programs}
    assert status == {"FC_Cin7_Cout3": "error", programs[-1].id: "ok"}


class PhoneLikeTransport(LocalTransport):
    """Answers the probe and thermal reads like an S8; everything else runs on this host."""

    def __init__(self, root):
        super().__init__(root)
        self.commands = []

    def shell(self, cmd, timeout_s=600.0):
        self.commands.append(cmd)
        if cmd == PROBE_SCRIPT:
            return 0, S8_PROBE.replace("uname aarch64", "uname x86_64")  # runner is x86-64 here
        if cmd == THERMAL_SCRIPT:
            return 0, S8_THERMAL
        return super().shell(cmd, timeout_s)


def test_pins_big_cores_or_says_why_not(tmp_path, runner_bin, programs):
    backend = _backend(tmp_path, runner_bin, ("ce0117",), PhoneLikeTransport)
    with backend:
        info = backend.device_info
        assert info.model == "SM-G950F" and info.os == "Android 9 (API 28)"
        assert info.extra["big_cores"] == [4, 5, 6, 7]
        # this host has fewer cores, so `taskset f0` fails: recorded, and the run goes on unpinned
        assert info.extra["pinning"].startswith("unavailable: taskset f0 failed")
        backend.push_artifacts(programs[:1])
        result = backend.run_job(_manifest(programs[:1]))
        assert result.programs[0].ok
        assert result.device["thermal_before_c"]["cpu#2"] == 47.0
    transport = backend.sessions[0].transport
    assert "taskset f0 true" in transport.commands
    run_cmd = next(c for c in transport.commands if "--manifest" in c)
    assert run_cmd.startswith(f"cd {PHONE_DIR} && (./fbnet_bench --manifest manifest.json")


def test_runner_for_another_cpu_is_refused(tmp_path, programs):
    arm = tmp_path / "fbnet_bench"
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (0xB7).to_bytes(2, "little"))
    with pytest.raises(UserError, match="built for aarch64.*build_android.sh"):
        with _backend(tmp_path, arm):
            pass


def test_different_models_are_refused(tmp_path, runner_bin):
    class Pixel(PhoneLikeTransport):
        def shell(self, cmd, timeout_s=600.0):
            code, out = super().shell(cmd, timeout_s)
            return code, out.replace("SM-G950F", "Pixel 3") if cmd == PROBE_SCRIPT else out

    profile = resolve_device("android:a,b")
    sessions = [PhoneSession("a", PhoneLikeTransport(tmp_path / "a"), runner_bin, PHONE_DIR,
                             tmp_path / "w"),
                PhoneSession("b", Pixel(tmp_path / "b"), runner_bin, PHONE_DIR, tmp_path / "w")]
    with pytest.raises(UserError, match="different models"):
        RunnerBackend(profile, BackendOptions(), sessions).prepare()


def test_a_hung_job_is_stopped(tmp_path, runner_bin, programs):
    with _backend(tmp_path, runner_bin) as backend:
        backend.push_artifacts(programs[:1])
        session = backend.sessions[0]
        start = time.monotonic()
        with pytest.raises(TransportError, match=r"did not finish within 1 s and was stopped "
                                                 r"\(pid \d+\)") as err:
            session.run(_manifest(programs[:1], iters=10**6, rounds=1), backend._programs,
                        timeout_s=1)
        assert time.monotonic() - start < 30
        pid = int(str(err.value).split("(pid ")[1].split(")")[0])
        for _ in range(50):  # the runner is gone (a zombie until its shell reaps it at most)
            try:
                os.kill(pid, 0)
                state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
            except (ProcessLookupError, FileNotFoundError):
                break
            if state == "Z":
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"runner pid {pid} still running after the timeout")


def test_native_host_backend_runs_the_phone_code_path(tmp_path, runner_bin, programs):
    from profiler.backends.native import create_backend

    options = BackendOptions(runner="native", native_runner=runner_bin, workdir=tmp_path)
    with create_backend(resolve_device("host"), options) as backend:
        assert backend.device_info.name == "host" and backend.device_info.os.startswith("Linux")
        assert backend.device_info.extra["runner"] == "native fbnet_bench"
        backend.push_artifacts(programs[:2])
        result = backend.run_job(_manifest(programs[:2]))
        assert all(p.ok and len(p.latencies_ms) == 6 for p in result.programs)
        assert backend.runtime_info().version == "1.5.1"
    # the host copy has the phone's layout
    assert (tmp_path / "native-host" / PHONE_DIR / "fbnet_bench").is_file()
    missing = BackendOptions(runner="native", native_runner=tmp_path / "nope")
    with pytest.raises(UserError, match="build it with android_app/build_host.sh"):
        create_backend(resolve_device("host"), missing)


# --- every command the backend sends, through real shells on the old adb shell protocol ------
V1_EXIT = "X4EXIT:"  # what adbutils appends on the old protocol: `<cmd>; echo X4EXIT:$?`
SHELLS = ("mksh", "dash", "bash")  # mksh is Android's /system/bin/sh


def _shell_or_skip(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"no {name} here (Debian package `{name}`; `make setup` installs it as root)")
    return path


def _with_sh(tmp_path: Path, shell: str) -> dict:
    """An environment whose `sh` is `shell`, as /system/bin/sh is mksh on a phone."""
    bindir = tmp_path / f"{Path(shell).name}-bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "sh").exists():
        (bindir / "sh").symlink_to(shell)
    return dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")


def _old_protocol(shell: str, cmd: str, cwd: Path, env: dict, timeout_s: float = 600.0):
    """`cmd` as adbd runs it on the old protocol - `sh -c "<cmd>; echo X4EXIT:$?"` - with the
    exit status parsed from the output like adbutils does; the shell must accept the text."""
    proc = subprocess.run([shell, "-c", v1_command(cmd) + f"; echo {V1_EXIT}$?"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0 and V1_EXIT in proc.stdout, (cmd, proc.stderr)
    output, _, code = proc.stdout.rpartition(V1_EXIT)
    return int(code), output + proc.stderr


@pytest.mark.parametrize("name", SHELLS)
def test_old_protocol_suffix_fits_every_script(tmp_path, name):
    shell = _shell_or_skip(name)
    env = _with_sh(tmp_path, shell)
    # the scripts as sent: a trailing newline would put `; echo` at the start of a line
    raw = subprocess.run([shell, "-c", PROBE_SCRIPT + f"; echo {V1_EXIT}$?"], env=env,
                         capture_output=True, text=True)
    assert V1_EXIT not in raw.stdout and "unexpected" in raw.stderr
    for cmd, code in [(PROBE_SCRIPT, 0), (THERMAL_SCRIPT, 0), ("exit 3", 3), ("false\n", 1),
                      ("true # a comment", 0), ("(sleep 0 & wait $!; exit 7)", 7)]:
        assert _old_protocol(shell, cmd, tmp_path, env)[0] == code, cmd
    assert parse_probe(_old_protocol(shell, PROBE_SCRIPT, tmp_path, env)[1]).cores


class OldProtocolTransport(LocalTransport):
    """This host with `sh` being one shell, every command run as the old adb protocol runs it."""

    shell_path = "/bin/sh"

    def __init__(self, root):
        super().__init__(root)
        self.env = _with_sh(self.root.parent, self.shell_path)
        self.replies: list[tuple[str, int]] = []

    def shell(self, cmd, timeout_s=600.0):
        code, out = _old_protocol(self.shell_path, cmd, self.root, self.env, timeout_s)
        self.replies.append((cmd, code))
        return code, out


@pytest.mark.parametrize("name", SHELLS)
def test_backend_commands_in_real_shells_on_the_old_protocol(tmp_path, runner_bin, programs,
                                                              name):
    transport_cls = type("Transport", (OldProtocolTransport,),
                         {"shell_path": _shell_or_skip(name)})
    backend = _backend(tmp_path, runner_bin, transport_cls=transport_cls)
    with backend:
        backend.push_artifacts(programs[:1])
        result = backend.run_job(_manifest(programs[:1]))
        assert result.programs[0].ok
        assert backend.device_info.extra["cpu_mask"]  # `taskset MASK true` succeeded
    replies = backend.sessions[0].transport.replies
    sent = "\n".join(cmd for cmd, _ in replies)
    for marker in (PROBE_SCRIPT, THERMAL_SCRIPT, "taskset ", "sha256sum", "mkdir -p",
                   "--version", "--manifest", "cat ", "runner.pid", "rm -rf"):
        assert marker in sent, f"the backend sent no command with {marker!r}"
    assert all(code == 0 for _, code in replies), replies
