"""The native `fbnet_bench` runner on a device reached through a `Transport`: one session per
device (PhoneSession) and the backend that drives them (RunnerBackend).

For each device: read what it is (getprop, per-core max frequency, governors, thermal zones),
pick the big cores (highest cpuinfo_max_freq) and pin the runner to them with `taskset
<hexmask>`, push the runner and the programs to its scratch folder (content-addressed, so files
it already has are skipped by checksum), run the job manifest with a timeout, pull result.json
and the ETDumps, record temperatures before and after.

Several devices split the programs of a job between them, one thread per device, and the
results merge into one; they must be the same model.

The transport says where the device is: adb for an Android phone (profiler/backends/android.py),
a `LocalTransport` (a scratch folder on the host laid out like a phone) for `--runner native` on
the host (profiler/backends/native.py), which the tests use too.
"""

from __future__ import annotations

import shlex
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from fbnet.errors import UserError
from fbnet.lut import DeviceInfo, RuntimeInfo
from profiler.backends.base import (Backend, BackendOptions, Program, Transport, TransportError,
                                    sha256_file)
from profiler.protocol import BenchResult, Manifest, ProgramResult, ProgramSpec

DEVICE_DIR = "/data/local/tmp/fbnet_bench"  # writable and executable over adb without root
RUNNER_NAME = "fbnet_bench"
REPO = Path(__file__).resolve().parents[2]

# One shell round trip that reads everything we record about a phone. Every line is
# "<tag> <value>"; commands a device lacks (getprop on a Linux host) just print nothing.
PROBE_SCRIPT = r"""
for p in ro.product.model ro.product.manufacturer ro.soc.manufacturer ro.soc.model \
         ro.board.platform ro.hardware ro.build.version.release ro.build.version.sdk \
         ro.product.cpu.abi; do
  echo "prop $p=$(getprop $p 2>/dev/null)"
done
echo "uname $(uname -m 2>/dev/null) $(uname -r 2>/dev/null)"
echo "online $(cat /sys/devices/system/cpu/online 2>/dev/null)"
echo "cpuinfo $(grep -m1 -E '^(model name|Hardware)' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
for c in /sys/devices/system/cpu/cpu[0-9]*; do
  echo "cpu ${c##*/cpu} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null || echo -) \
$(cat $c/cpufreq/scaling_governor 2>/dev/null || echo -)"
done
command -v taskset >/dev/null 2>&1 && echo "tool taskset"
command -v sha256sum >/dev/null 2>&1 && echo "tool sha256sum"
true
"""
THERMAL_SCRIPT = r"""
for z in /sys/class/thermal/thermal_zone*; do
  [ -r $z/temp ] && echo "$(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)"
done
true
"""
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x28: "arm", 0x03: "x86"}
UNAME_MACHINES = {"aarch64": "aarch64", "arm64": "aarch64", "armv8l": "arm", "armv7l": "arm",
                  "x86_64": "x86_64", "i686": "x86"}


# --- what a phone is --------------------------------------------------------------------------
@dataclass
class CoreInfo:
    index: int
    max_freq_khz: int | None
    governor: str | None


@dataclass
class Probe:
    """What one probe of a phone found (parsed from PROBE_SCRIPT's output)."""

    props: dict[str, str] = field(default_factory=dict)
    machine: str | None = None  # uname -m
    kernel: str | None = None
    cpu_model: str | None = None
    online: list[int] = field(default_factory=list)
    cores: list[CoreInfo] = field(default_factory=list)
    tools: set[str] = field(default_factory=set)

    @property
    def model(self) -> str | None:
        return self.props.get("ro.product.model") or None

    @property
    def soc(self) -> str | None:
        soc = self.props.get("ro.soc.model") or self.props.get("ro.board.platform") or \
            self.props.get("ro.hardware")
        maker = self.props.get("ro.soc.manufacturer")
        return f"{maker} {soc}" if soc and maker else soc or None

    @property
    def os(self) -> str | None:
        release, sdk = self.props.get("ro.build.version.release"), \
            self.props.get("ro.build.version.sdk")
        if release:
            return f"Android {release}" + (f" (API {sdk})" if sdk else "")
        return f"Linux {self.kernel}" if self.kernel else None

    def big_cores(self) -> list[int]:
        """Online cores with the highest cpuinfo_max_freq; all online cores when unknown."""
        online = [c for c in self.cores if not self.online or c.index in self.online]
        freqs = [c.max_freq_khz for c in online if c.max_freq_khz]
        if not freqs:
            return [c.index for c in online] or self.online
        top = max(freqs)
        return [c.index for c in online if c.max_freq_khz == top]

    def fastest_cores(self, n: int) -> list[int]:
        """The big cores, widened to the next-fastest ones when `n` threads need more."""
        big = self.big_cores()
        if n <= len(big):
            return big
        online = [c for c in self.cores if not self.online or c.index in self.online]
        ranked = sorted(online, key=lambda c: (-(c.max_freq_khz or 0), c.index))
        return sorted(c.index for c in ranked[:n]) or big

    def cpu_summary(self) -> str:
        """e.g. '8 cores: 4x 2.314 GHz + 4x 1.690 GHz'."""
        freqs = [c.max_freq_khz for c in self.cores]
        text = f"{len(self.cores)} cores"
        if any(freqs):
            groups: dict[int, int] = {}
            for f in freqs:
                if f:
                    groups[f] = groups.get(f, 0) + 1
            text += ": " + " + ".join(f"{n}x {f / 1e6:.3f} GHz"
                                      for f, n in sorted(groups.items(), reverse=True))
        return f"{self.cpu_model} ({text})" if self.cpu_model else text


def parse_probe(text: str) -> Probe:
    probe = Probe()
    for line in text.splitlines():
        tag, _, rest = line.strip().partition(" ")
        if tag == "prop":
            name, _, value = rest.partition("=")
            if value.strip():
                probe.props[name] = value.strip()
        elif tag == "uname":
            parts = rest.split()
            probe.machine = parts[0] if parts else None
            probe.kernel = parts[1] if len(parts) > 1 else None
        elif tag == "online":
            probe.online = parse_cpu_list(rest.strip())
        elif tag == "cpuinfo":
            probe.cpu_model = rest.strip() or None
        elif tag == "cpu":
            parts = rest.split()
            if len(parts) == 3 and parts[0].isdigit():
                freq = int(parts[1]) if parts[1].isdigit() else None
                gov = parts[2] if parts[2] != "-" else None
                probe.cores.append(CoreInfo(int(parts[0]), freq, gov))
        elif tag == "tool":
            probe.tools.add(rest.strip())
    probe.cores.sort(key=lambda c: c.index)
    return probe


def parse_cpu_list(text: str) -> list[int]:
    """Kernel CPU list syntax ('0-3,6') -> [0, 1, 2, 3, 6]."""
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit():
            cpus.extend(range(int(lo), int(hi if hi.isdigit() else lo) + 1))
    return cpus


def cpu_mask(cores: list[int]) -> str:
    """taskset's hex mask for a set of cores: [4, 5, 6, 7] -> 'f0'."""
    return format(sum(1 << c for c in cores), "x")


def parse_thermal(text: str) -> dict[str, float]:
    """'<zone type> <temp>' lines -> {type: degrees C}; millidegrees are the usual unit."""
    temps: dict[str, float] = {}
    for line in text.splitlines():
        name, _, raw = line.strip().rpartition(" ")
        try:
            value = float(raw)
        except ValueError:
            continue
        if not name:
            continue
        celsius = value / 1000.0 if abs(value) >= 1000 else value
        key, n = name, 2
        while key in temps:  # several zones share a type (e.g. "cpu" per cluster)
            key, n = f"{name}#{n}", n + 1
        temps[key] = round(celsius, 1)
    return temps


def elf_machine(path: Path) -> str | None:
    """The CPU architecture an ELF executable is built for (None: not ELF)."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    order = "little" if header[5] == 1 else "big"
    code = int.from_bytes(header[18:20], order)
    return ELF_MACHINES.get(code, f"machine {code:#x}")


# --- one phone --------------------------------------------------------------------------------
@dataclass
class JobOutcome:
    result: BenchResult
    thermal_before_c: dict[str, float]
    thermal_after_c: dict[str, float]
    seconds: float
    pushed: int  # programs copied this job (the rest were already on the phone)


class PhoneSession:
    """One device reached through a transport: probe it, install the runner, run jobs.

    `device_dir` is where our files live there; for a LocalTransport it is a path relative to
    its scratch root, so the host copy has the phone's layout (<root>/data/local/tmp/...).
    """

    def __init__(self, serial: str, transport: Transport, runner: Path, device_dir: str,
                 workdir: Path, pin_big_cores: bool = True, threads: int = 1):
        self.serial = serial
        self.transport = transport
        self.runner = Path(runner)
        self.dir = device_dir.rstrip("/")
        self.workdir = Path(workdir)
        self.pin_big_cores = pin_big_cores
        self.threads = threads
        self.probe: Probe | None = None
        self.mask: str | None = None  # taskset mask in use (None: not pinned)
        self.pinning: str = "off"  # what happened with pinning, for the LUT's device record
        self.runner_version: str | None = None
        self._known: dict[str, str] = {}  # device path -> sha256 already there
        self.jobs_run = 0
        self.last_jobdir: Path | None = None

    def _q(self, rel: str) -> str:
        return shlex.quote(f"{self.dir}/{rel}")

    def prepare(self) -> Probe:
        code, out = self.transport.shell(PROBE_SCRIPT, timeout_s=60)
        if code != 0:
            raise TransportError(f"{self.serial}: reading device properties failed: "
                                 f"{_tail(out)}")
        self.probe = probe = parse_probe(out)
        self._check_runner_arch(probe)
        self._choose_cores(probe)
        code, out = self.transport.shell(f"mkdir -p {self._q('programs')}", timeout_s=30)
        if code != 0:
            raise TransportError(f"{self.serial}: cannot create {self.dir} ({_tail(out)}); "
                                 "is the storage full?")
        self._known = self._remote_checksums()
        self._push_if_changed(self.runner, RUNNER_NAME)
        code, out = self.transport.shell(f"cd {shlex.quote(self.dir)} && ./{RUNNER_NAME} "
                                         "--version", timeout_s=60)
        if code != 0:
            raise TransportError(f"{self.serial}: the runner does not start there: {_tail(out)}; "
                                 "rebuild it (android_app/build_android.sh)")
        self.runner_version = out.strip().rpartition("ExecuTorch ")[2].rstrip(")") or None
        return probe

    def _check_runner_arch(self, probe: Probe) -> None:
        built_for = elf_machine(self.runner)
        runs = UNAME_MACHINES.get(probe.machine or "", probe.machine)
        if built_for and runs and built_for != runs:
            raise UserError(f"{self.runner} is built for {built_for} but {self.serial} is "
                            f"{runs}; build the runner for it (android_app/build_android.sh "
                            "for arm64-v8a phones)")

    def _choose_cores(self, probe: Probe) -> None:
        if not self.pin_big_cores:
            self.pinning = "off"
            return
        cores = probe.fastest_cores(self.threads)
        if not cores:
            self.pinning = "unavailable: no CPU list"
            return
        mask = cpu_mask(cores)
        if "taskset" not in probe.tools:
            self.pinning = "unavailable: no taskset on the device"
            return
        code, out = self.transport.shell(f"taskset {mask} true", timeout_s=30)
        if code != 0:  # e.g. the mask names cores this process may not use
            self.pinning = f"unavailable: taskset {mask} failed ({_tail(out, 100)})"
            return
        self.mask = mask
        self.pinning = f"taskset {mask} (cores {','.join(map(str, cores))})"

    def _remote_checksums(self) -> dict[str, str]:
        """sha256 of every file we keep there, in one round trip (empty without sha256sum)."""
        if self.probe is None or "sha256sum" not in self.probe.tools:
            return {}
        code, out = self.transport.shell(
            f"cd {shlex.quote(self.dir)} && for f in {RUNNER_NAME} programs/*; do "
            '[ -f "$f" ] && sha256sum "$f"; done; true', timeout_s=120)
        sums = {}
        for line in out.splitlines() if code == 0 else []:
            digest, _, name = line.strip().partition(" ")
            if len(digest) == 64:
                sums[name.strip().lstrip("*")] = digest
        return sums

    def _push_if_changed(self, local: Path, rel: str, digest: str | None = None) -> bool:
        digest = digest or sha256_file(local)
        if self._known.get(rel) == digest:
            return False
        self.transport.push(local, f"{self.dir}/{rel}")
        self._known[rel] = digest
        return True

    def thermal(self) -> dict[str, float]:
        code, out = self.transport.shell(THERMAL_SCRIPT, timeout_s=30)
        return parse_thermal(out) if code == 0 else {}

    def run(self, manifest: Manifest, programs: dict[str, Program],
            timeout_s: float | None = None) -> JobOutcome:
        """Run `manifest` (program paths local) there; returns the result with local paths."""
        started = time.monotonic()
        pushed = 0
        remote_specs = []
        for spec in manifest.programs:
            prog = programs.get(spec.id)
            local = Path(prog.path if prog else spec.path)
            if not local.is_file():
                raise UserError(f"program {local} for {spec.id} does not exist; re-export it")
            digest = (prog.sha256 if prog and prog.sha256 else None) or sha256_file(local)
            rel = f"programs/{digest[:20]}{local.suffix}"
            pushed += self._push_if_changed(local, rel, digest)
            remote_specs.append(replace(spec, path=rel))
        job = replace(manifest, programs=remote_specs)
        # A folder per job, so a job's ETDumps outlive the next job.
        self.jobs_run += 1
        jobdir = self.workdir / _safe_name(self.serial) / f"job{self.jobs_run:04d}"
        shutil.rmtree(jobdir, ignore_errors=True)
        jobdir.mkdir(parents=True)
        self.last_jobdir = jobdir
        job.save(jobdir / "manifest.json")
        self.transport.shell(f"rm -rf {self._q('result.json')} {self._q('etdump')} "
                             f"{self._q('runner.log')}", timeout_s=30)
        self.transport.push(jobdir / "manifest.json", f"{self.dir}/manifest.json")

        before = self.thermal()
        pin = f"taskset {self.mask} " if self.mask else ""
        # Background + wait so the runner's pid is known while it runs (runner.pid exists only
        # then): a timed-out or interrupted job is killed by that pid, never by name.
        cmd = (f"cd {shlex.quote(self.dir)} && ({pin}./{RUNNER_NAME} --manifest manifest.json "
               "--output result.json >runner.log 2>&1 & echo $! >runner.pid; wait $!; rc=$?; "
               "rm -f runner.pid; exit $rc)")
        timeout_s = timeout_s or job_timeout_s(job)
        t0 = time.monotonic()
        try:
            code, _ = self.transport.shell(cmd, timeout_s=timeout_s)
        except TransportError:
            if time.monotonic() - t0 < timeout_s:
                raise  # the connection failed, not the runner
            pid = self.stop_runner()
            raise TransportError(
                f"{self.serial}: the runner did not finish within {timeout_s:.0f} s and was "
                f"stopped (pid {pid}); measure fewer programs per job (--chunk) or lower "
                "--iters") from None
        after = self.thermal()
        _, log = self.transport.shell(f"cat {self._q('runner.log')}", timeout_s=30)
        if code not in (0, 1):  # 1 = some programs failed, the result is still complete
            raise TransportError(f"{self.serial}: the runner exited with code {code}: "
                                 f"{_tail(log)}")
        self.transport.pull(f"{self.dir}/result.json", jobdir / "result.json")
        result = BenchResult.load(jobdir / "result.json")
        local_paths = {spec.id: str(spec.path) for spec in manifest.programs}
        for prog in result.programs:
            prog.path = local_paths.get(prog.id, prog.path)  # the local artifact again
            if prog.etdump:
                local = jobdir / prog.etdump
                self.transport.pull(f"{self.dir}/{prog.etdump}", local)
                prog.etdump = str(local)
        result.device.update(self.device_record(before, after))
        return JobOutcome(result, before, after, time.monotonic() - started, pushed)

    def device_record(self, before: dict | None = None, after: dict | None = None) -> dict:
        probe = self.probe or Probe()
        record = {
            "serial": self.serial,
            "model": probe.model,
            "soc": probe.soc,
            "abi": probe.props.get("ro.product.cpu.abi") or probe.machine,
            "os": probe.os,
            "max_freq_khz": [c.max_freq_khz for c in probe.cores],
            "governor": [c.governor for c in probe.cores],
            "big_cores": probe.big_cores(),
            "cpu_mask": self.mask,
            "pinning": self.pinning,
        }
        if before is not None:
            record["thermal_before_c"] = before
        if after is not None:
            record["thermal_after_c"] = after
        return record

    def stop_runner(self) -> str | None:
        """Kill a runner that is still going (after a timeout or Ctrl-C); returns its pid."""
        code, out = self.transport.shell(
            f"pid=$(cat {self._q('runner.pid')} 2>/dev/null) && kill $pid 2>/dev/null; "
            "echo $pid", timeout_s=30)
        pid = out.strip().splitlines()[-1] if out.strip() else ""
        return pid if pid.isdigit() else None

    def cleanup(self) -> None:
        """Stop a runner left running, remove the job's files; the runner and programs stay so
        a re-run pushes nothing."""
        self.stop_runner()
        self.transport.shell(f"rm -rf {self._q('manifest.json')} {self._q('result.json')} "
                             f"{self._q('etdump')} {self._q('runner.log')} "
                             f"{self._q('runner.pid')}; true", timeout_s=30)


def job_timeout_s(manifest: Manifest) -> float:
    """A generous bound for one job: 5 s per program per round (a 224 px block runs ~100
    executions of at most a few tens of ms per round on a phone), plus ETDump runs and
    cool-downs."""
    passes = manifest.rounds + (1 if manifest.etdump else 0)
    return 120.0 + 5.0 * len(manifest.programs) * passes + manifest.cooldown_s * manifest.rounds


def _safe_name(serial: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in serial)


def _tail(text: str, limit: int = 300) -> str:
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    tail = lines[-1] if lines else "(no output)"
    return tail if len(tail) <= limit else tail[:limit] + "..."


# --- the backend ------------------------------------------------------------------------------
class RunnerBackend(Backend):
    """Runs jobs with the native runner on one or more `PhoneSession`s (split + merge)."""

    def __init__(self, profile, options: BackendOptions, sessions: list[PhoneSession]):
        super().__init__(profile, options)
        self.sessions = sessions
        self._programs: dict[str, Program] = {}
        self.jobs: list[dict] = []  # per-job, per-phone summary (thermals, pushes, seconds)
        self._lock = threading.Lock()

    def prepare(self) -> DeviceInfo:
        if self.options.runtime != "executorch":
            raise UserError("the native runner runs ExecuTorch programs only; drop --runtime "
                            f"{self.options.runtime} (TorchScript-lite runs on --device host)")
        probes = [s.prepare() for s in self.sessions]
        models = {p.model for p in probes}
        if len(models) > 1:
            listing = ", ".join(f"{s.serial} ({p.model})" for s, p in zip(self.sessions, probes))
            raise UserError(f"the phones are different models ({listing}); a LUT describes one "
                            "model: measure them in separate runs")
        first, probe = self.sessions[0], probes[0]
        extra = first.device_record()
        extra["thermal_c"] = first.thermal()
        extra["runner"] = "native fbnet_bench"
        extra["jobs"] = self.jobs  # the same list: every save of the LUT has the jobs so far
        if len(self.sessions) > 1:
            extra["serials"] = [s.serial for s in self.sessions]
            extra["phones"] = [s.device_record() for s in self.sessions]
        self.device_info = DeviceInfo(name=self.profile.name, model=probe.model, soc=probe.soc,
                                      cpu=probe.cpu_summary(), os=probe.os, extra=extra)
        return self.device_info

    def push_artifacts(self, programs: list[Program]) -> None:
        """Remember the programs; each phone receives its share (if it lacks it) in run_job."""
        for prog in programs:
            self._programs[prog.id] = prog

    def run_job(self, manifest: Manifest) -> BenchResult:
        manifest = self.start_job(manifest)
        shares = split_programs(manifest.programs, len(self.sessions))
        work = [(s, replace(manifest, programs=share))
                for s, share in zip(self.sessions, shares) if share]
        if len(work) == 1:
            outcomes = [work[0][0].run(work[0][1], self._programs)]
        else:
            pool = ThreadPoolExecutor(max_workers=len(work))
            try:
                outcomes = list(pool.map(lambda sw: sw[0].run(sw[1], self._programs), work))
            finally:
                # On Ctrl-C or a failed phone do not wait for the others: cleanup() stops
                # their runners, which ends their threads.
                pool.shutdown(wait=False, cancel_futures=True)
        self.job_ended()
        with self._lock:
            self.jobs.append({"programs": len(manifest.programs), "phones": [
                {"serial": s.serial, "programs": len(m.programs), "pushed": o.pushed,
                 "seconds": round(o.seconds, 2), "thermal_before_c": o.thermal_before_c,
                 "thermal_after_c": o.thermal_after_c} for (s, m), o in zip(work, outcomes)]})
        return merge_results(manifest, [o.result for o in outcomes])

    def pull_results(self, dest: Path) -> list[Path]:
        """result.json and ETDumps of the last job, per phone, copied into `dest`."""
        copied = []
        for session in self.sessions:
            src = session.last_jobdir
            if src is None or not src.is_dir():
                continue
            for path in sorted(src.rglob("*")):
                if path.is_file():
                    target = Path(dest) / _safe_name(session.serial) / path.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                    copied.append(target)
        return copied

    def runtime_info(self) -> RuntimeInfo:
        return RuntimeInfo(name="executorch", version=self.sessions[0].runner_version,
                           backend=self.options.backend, dtype=self.options.dtype,
                           threads=self.options.threads)

    def cleanup(self) -> None:
        for session in self.sessions:
            try:
                session.cleanup()
            except TransportError:
                pass  # the phone went away; nothing of ours is left to lose


def split_programs(programs: list[ProgramSpec], n: int) -> list[list[ProgramSpec]]:
    """Deal programs round-robin to n phones (neighbours in a manifest have similar cost)."""
    return [programs[i::n] for i in range(n)]


def merge_results(manifest: Manifest, results: list[BenchResult]) -> BenchResult:
    """One result in manifest order from the per-phone results."""
    by_id: dict[str, ProgramResult] = {}
    for res in results:
        by_id.update(res.by_id())
    programs = []
    for spec in manifest.programs:
        programs.append(by_id.get(spec.id) or ProgramResult(
            spec.id, str(spec.path), status="error", error="no phone returned a result"))
    first = results[0]
    device = dict(first.device)
    if len(results) > 1:
        device["phones"] = [r.device for r in results]
    starts = [r.started for r in results if r.started]
    ends = [r.finished for r in results if r.finished]
    return BenchResult(runner=first.runner, device=device, programs=programs,
                       started=min(starts) if starts else None,
                       finished=max(ends) if ends else None)
