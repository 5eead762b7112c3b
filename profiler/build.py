"""The LUT build: measure every block of a search space on a device and write its LUT.

Every unique workload of the space (candidates at each layer shape, stem, head, pool and the
classifier for 10, 100 and 1000 classes) is exported, run round-robin in jobs of a few programs
each with a reference block (profiler.noise keeps other load and heat out of the numbers), and
written to the LUT after each job, so an interrupted build keeps every finished entry and
`resume` continues it. A program's rounds are spread over several passes, each a new set of
jobs with the programs grouped afresh, and pooled: a block timed in one job reads up to ~10% off
in the next (other load, caches, memory layout), so one job per block made builds disagree
entry by entry while each entry's own interval looked tight. `extend` adds what a complete LUT
lacks. Calibration networks then fit the summation (profiler.calibration).
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fbnet.arch import load_architecture
from fbnet.coverage import (CLASSIFIER_CLASSES, architecture_workloads, lut_workloads,
                            named_only_keys)
from fbnet.errors import UserError
from fbnet.lut import LUT_SCHEMA, Lut, Measurement, Provenance, load_lut, lut_file_name
from fbnet.space import SpaceConfig
from fbnet.workloads import Workload, candidate_workload
from profiler.backends.base import Backend
from profiler.calibration import Calibration, calibration_architectures, fit_summation
from profiler.export import DEFAULT_CACHE, ArtifactCache
from profiler.jobs import (Exporter, Progress, RunPool, arch_job, chunks, export_job,
                           measured_entry, pass_share)
from profiler.noise import NOISY_MIN_MS, measure_part, recheck_drift, remeasure_noisy, settle
from profiler.settings import THREAD_CPU_MIN_SAMPLE_MS, Settings, Target

DRIFT_WARN = 0.10  # warn when the reference workload moves more than this over the run


@dataclass(frozen=True)
class BuildSettings:
    """One LUT build: what to measure, how, where, and what to write."""

    target: Target
    space: SpaceConfig
    measure: Settings
    out: Path
    cache: Path = DEFAULT_CACHE
    only: str | None = None  # comma-separated globs of the keys to measure (a partial LUT)
    include_named: bool = False  # also every part of each named architecture
    cover: tuple[str, ...] = ()  # also every part of these architectures (--cover)
    calibration: Calibration = field(default_factory=Calibration)
    workers: int = 2  # export processes
    chunk: int = 16  # programs per measuring job
    passes: int | None = None  # sets of jobs the rounds are spread over; None: one per round
    resume: bool = False  # continue the unfinished LUT in `out`
    extend: bool = False  # add what the complete LUT in `out` lacks
    replace: bool = False  # build anew beside `out`, moved over it once complete
    progress: str = "bar"  # profiler.jobs.PROGRESS_MODES
    command: str = "python -m profiler.run"  # recorded in the LUT's provenance

    def exporter(self) -> Exporter:
        return Exporter(ArtifactCache(self.cache), self.workers, self.progress)

    @property
    def pass_count(self) -> int:
        passes = self.measure.rounds if self.passes is None else self.passes
        pass_share(self.measure, passes)  # a one-line error outside 1..rounds, before exports
        return passes

    def pass_settings(self) -> Settings:
        """How one pass times each program: its share of the rounds and timed runs."""
        return pass_share(self.measure, self.pass_count)


# A build's default --out: the user's own LUTs, apart from the shipped ones in luts/, which a
# build replaces only when told to (--out luts/host_32.json --replace).
USER_LUT_DIR = Path("runs") / "luts"


def default_lut_path(device: str, resolution: int, s: Settings) -> Path:
    return USER_LUT_DIR / lut_file_name(device, resolution, s.dtype, s.backend, s.runtime)


def replacement_path(out: Path) -> Path:
    """Where a --replace build writes until it is complete, beside the LUT it replaces."""
    return out.with_name(f"{out.stem}.replacement{out.suffix}")


def _holds_unfinished_build(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
        return data.get("schema") == LUT_SCHEMA and \
            not (data.get("measurement") or {}).get("complete", True)
    except (OSError, ValueError, AttributeError):
        return False


def check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if path.is_dir() or (path.exists() and not os.access(path, os.W_OK)) or \
            not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UserError(f"cannot write {path}; choose a writable --out")


def reference_workload(space: SpaceConfig) -> Workload:
    """A mid-sized block re-measured in every job to expose drift (throttling, other load)."""
    layers = space.layers()
    return candidate_workload(layers[len(layers) // 2], "k3_e3")


def selected_workloads(space: SpaceConfig, only: str | None, include_named: bool,
                       cover: tuple[str, ...] = ()) -> dict[str, Workload]:
    """The workloads a build measures, by key: the space's (and the named architectures',
    and every part of the `cover` architectures at the space's resolution), or those matching
    the `only` globs."""
    workloads = {w.key: w for w in lut_workloads(space, named=include_named)}
    for spec in cover:
        arch = load_architecture(spec, resolution=space.resolution)
        workloads.update({w.key: w for w in architecture_workloads(arch)})
    if not only:
        return workloads
    patterns = [g.strip() for g in only.split(",") if g.strip()]
    workloads = {k: w for k, w in workloads.items()
                 if any(fnmatch.fnmatch(k, g) for g in patterns)}
    if not workloads:
        raise UserError(f"--only {only} matches no workload of this space; list them "
                        "with python -m search.space --workloads")
    return workloads


# --- the LUT ----------------------------------------------------------------------------------
def new_lut(backend: Backend, cfg: BuildSettings) -> Lut:
    measurement = Measurement(
        **asdict(cfg.measure), passes=cfg.pass_count, recipe=cfg.measure.recipe.name,
        protocol="round-robin rounds spread over passes of freshly grouped jobs; warm-up every "
        "round; median of the pooled timed runs without ETDump; per-op from a separate ETDump "
        "run" + (f"; a program under {THREAD_CPU_MIN_SAMPLE_MS * 1e3:g} us runs several times "
                 "per timed sample (the mean)" if cfg.measure.clock == "thread_cpu" else ""),
        complete=False,
        classifier_classes=list(CLASSIFIER_CLASSES), only=cfg.only,
        named_architectures=cfg.include_named)
    provenance = Provenance("measured", {
        "tool": "python -m profiler.run", "runner": cfg.target.runner, "command": cfg.command,
        "load_avg_1m_start": round(os.getloadavg()[0], 2)})
    return Lut(device=backend.device_info, runtime=backend.runtime_info(),
               provenance=provenance, space=cfg.space, measurement=measurement)


# How each entry was measured, by the flag that sets it: a resumed or extended LUT takes the
# same, so no LUT holds entries measured two ways.
MEASURING_FLAGS = {"threads": "--threads", "warmup": "--warmup", "iters": "--iters",
                   "rounds": "--rounds", "passes": "--passes", "etdump_iters": "--etdump-iters",
                   "ops": "--no-ops", "recipe": "--dtype/--backend"}


def _flag_value(field_name: str, value) -> str:
    if field_name == "ops":
        return "absent" if value else "given"
    return str(value)


def resume_lut(path: Path, fresh: Lut) -> Lut:
    old = load_lut(path)
    changed = [f"{flag} {_flag_value(name, getattr(fresh.measurement, name))} (the LUT: "
               f"{_flag_value(name, getattr(old.measurement, name))})"
               for name, flag in MEASURING_FLAGS.items()
               if getattr(old.measurement, name) is not None
               and getattr(old.measurement, name) != getattr(fresh.measurement, name)]
    if changed:
        raise UserError(f"cannot continue {path} with other measuring settings than it was "
                        f"built with: {'; '.join(changed)}; give its settings, or another --out")
    mismatch = []
    if old.device.name != fresh.device.name:
        mismatch.append(f"device {old.device.name} vs {fresh.device.name}")
    if asdict(old.runtime) != asdict(fresh.runtime):
        mismatch.append(f"runtime {old.runtime} vs {fresh.runtime}")
    if old.space != fresh.space:
        mismatch.append("the space (resolution/widths)")
    if old.measurement.clock != fresh.measurement.clock:
        mismatch.append(f"clock {old.measurement.clock} vs {fresh.measurement.clock}")
    if mismatch:
        raise UserError(f"cannot resume {path}: it was measured with different settings "
                        f"({'; '.join(mismatch)}); use another --out or drop --resume")
    return old


def extend_lut(path: Path, fresh: Lut) -> tuple[Lut, dict]:
    """The complete LUT in `path` (measured with the settings of `fresh`) and the record of
    what this run adds to it, appended to its provenance's `additions`: the command, date and
    machine load (other load inflates host latencies) of the run, and the keys it measured."""
    if not path.is_file():
        raise UserError(f"--extend adds to an existing LUT and {path} does not exist; build it "
                        "without --extend")
    lut = resume_lut(path, fresh)
    if not lut.measurement.complete:
        raise UserError(f"{path} is an unfinished build; continue it with --resume")
    details = fresh.provenance.details
    record = {"command": details["command"],
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "cpu_count": os.cpu_count(),
              "load_avg_start": [round(v, 2) for v in os.getloadavg()],
              "load_avg_1m_start": details["load_avg_1m_start"],
              "keys": []}
    lut.provenance.details.setdefault("additions", []).append(record)
    return lut, record


def stability(lut: Lut) -> dict:
    """How much of the LUT is noise, in a few figures (all 95% half-widths, in %):
    entry_ci_median_pct / entry_ci_p90_pct: the entries' intervals relative to their medians;
    network_ci_pct: what those add up to in a calibration network's prediction (median);
    calibration_rms_pct: the fitted summation's RMS error on the calibration networks;
    unsettled: entries still noisy after re-measuring; reference_drift: the reference
    block's largest change between jobs."""
    rel = [100 * e.ci_half_ms / e.latency_ms for e in lut.entries.values()
           if e.ci_half_ms is not None and e.latency_ms > NOISY_MIN_MS]
    drift = lut.measurement.drift or {}
    rows = lut.summation.fit.get("networks") or []
    result = {"entry_ci_median_pct": round(float(np.median(rel)), 2) if rel else None,
              "entry_ci_p90_pct": round(float(np.percentile(rel, 90)), 2) if rel else None,
              "network_ci_pct": None, "calibration_rms_pct": None,
              "unsettled": drift.get("unsettled"), "reference_drift": drift.get("max_change")}
    nets = [r["lut_ci_pct"] for r in rows if "lut_ci_pct" in r]
    if nets:
        result["network_ci_pct"] = round(float(np.median(nets)), 2)
    if len(rows) >= 3:
        result["calibration_rms_pct"] = round(float(np.sqrt(np.mean(
            [r["error_pct"] ** 2 for r in rows]))), 2)
    return result


def warn_if_host_was_busy(kind: str, details: dict) -> None:
    """Other processes on the host share its cores and caches: a 2-core VM measured blocks
    1.4-2.2x slower, consistently, while a search ran beside the profiler (load 1.4 -> 3.0), so
    the drift check of the reference block does not catch it."""
    cores = os.cpu_count() or 1
    load = max(details.get("load_avg_1m_start", 0.0), details.get("load_avg_1m_end", 0.0))
    if kind == "host" and load > cores:
        print(f"warning: the host was busy while measuring (1-minute load up to {load:.1f} on "
              f"{cores} cores); other processes inflate host latencies (up to 2x seen), so "
              "re-measure on a quiet machine for a clean LUT", file=sys.stderr)


# --- the build --------------------------------------------------------------------------------
def _record(lut: Lut, addition: dict | None, **values) -> None:
    """Keep this run's records (export, drift, stability, timing) in the build's measurement,
    or in the record of an addition to a complete LUT."""
    for key, value in values.items():
        if addition is None:
            setattr(lut.measurement, key, value)
        else:
            addition[key] = value


def build_lut(cfg: BuildSettings) -> dict:
    """Measure the space of `cfg` into the LUT `cfg.out`; returns the build's summary."""
    s, space, passes = cfg.measure, cfg.space, cfg.pass_count
    target_path = cfg.out
    check_writable(target_path)
    if cfg.replace and cfg.extend:
        raise UserError("--replace builds a new LUT and --extend adds to the old one: give one")
    # a replacement is measured beside the LUT it replaces and moved over it when complete, so
    # an interrupted one leaves the old LUT as it was (and --replace --resume continues it)
    out = replacement_path(target_path) if cfg.replace else target_path
    if out.exists() and not cfg.resume and not cfg.extend:
        what = "an unfinished build" if _holds_unfinished_build(out) else "a LUT"
        raise UserError(f"{out} already holds {what}; continue it with --resume, write another "
                        "--out, or replace it with --replace (written beside it, moved over it "
                        "when complete)")
    exporter = cfg.exporter()
    workloads = selected_workloads(space, cfg.only, cfg.include_named, cfg.cover)
    ref = reference_workload(space)
    t_start = time.perf_counter()
    with cfg.target.open(s, "profile") as backend:
        lut, addition = new_lut(backend, cfg), None
        if cfg.extend:
            lut, addition = extend_lut(out, lut)
        elif cfg.resume and out.exists():
            lut = resume_lut(out, lut)
            if lut.measurement.complete and all(k in lut.entries for k in workloads):
                # nothing left: the LUT, its fit included, stays as it is (what was priced
                # or searched with it stays valid)
                if out != target_path:
                    os.replace(out, target_path)
                return {"lut": str(target_path), "entries": len(lut.entries), "measured_now": 0,
                        "complete_already": True, "title": lut.title}
        # the machine load goes with the build's provenance or with the addition
        load_record = lut.provenance.details if addition is None else addition
        lut.measurement.complete = False
        todo = [k for k in workloads if k not in lut.entries]
        if addition is not None:
            addition["keys"] = todo
            named = {a: [k for k in keys if k in todo]
                     for a, keys in named_only_keys(space).items()}
            addition["named_architectures"] = {a: keys for a, keys in named.items() if keys}
            if cfg.cover:
                addition["architectures"] = list(cfg.cover)
        jobs = [export_job(k, workloads[k].input_shape, s) for k in todo]
        if ref.key not in todo:
            jobs.append(export_job(ref.key, ref.input_shape, s))
        # a partial build and an addition keep no fit of their own
        calibration = Calibration(0, cfg.calibration.seed) if cfg.only or cfg.extend \
            else cfg.calibration
        # The calibration networks go into the same export pool (starting a pool costs
        # seconds), first: they are the longest exports, so both workers end together.
        networks = [arch_job(a, s) for a in calibration_architectures(
            space, calibration.networks, calibration.seed)]
        artifacts, export_stats = exporter.export(
            networks + jobs, etrecord=lambda job: job.arch is None)  # networks: no ETDump
        drift = {"reference": ref.key, "medians_ms": []}
        if addition is None and lut.measurement.drift is not None:
            drift = lut.measurement.drift  # a resumed build continues its record
        _record(lut, addition, export={"exported": export_stats.exported,
                                       "cached": export_stats.cached,
                                       "wall_s": round(export_stats.wall_s, 1)}, drift=drift)
        t_measure = time.perf_counter()
        bar = Progress.measuring(len(todo), passes, cfg.progress)
        pool = RunPool()  # the timed runs behind each entry of this run, by job
        one_pass = cfg.pass_settings()

        def update(keys: list[str]) -> None:
            """Remake these entries from their pooled runs."""
            for key in keys:
                lut.entries[key] = measured_entry(
                    pool.pooled(key), artifacts[key], workloads[key], one_pass,
                    per_op_from=lut.entries.get(key) if pool.jobs(key) > 1 else None,
                    ref_ratio=pool.ref_ratio(key))
            lut.save(out)  # every finished entry survives Ctrl-C or a crash

        try:
            if todo:
                settle(backend, artifacts[ref.key], s, drift)
            thermal_c = (backend.device_info.extra or {}).get("thermal_c") or {}
            # an interrupted build keeps every entry as far as it was measured (its `n` says
            # how many runs); --resume measures the missing ones
            for n in range(passes):
                # the first pass keeps the space's order and takes the ETDumps
                order = todo if n == 0 else random.Random(n).sample(todo, len(todo))
                settings = one_pass if n == 0 else replace(one_pass, ops=False)
                measured_jobs = []
                for part in chunks(order, cfg.chunk):
                    results, ref_ms = measure_part(backend, part, artifacts, ref.key, settings,
                                                   drift, thermal_c)
                    for key in part:
                        pool.put(key, f"pass{n}", results[key], results[ref.key])
                    drift["medians_ms"].append(round(ref_ms, 6))
                    measured_jobs.append((part, len(drift["medians_ms"]) - 1, f"pass{n}"))
                    update(part)
                    bar.update(len(part))
                recheck_drift(backend, measured_jobs, pool, artifacts, ref.key, settings, drift,
                              thermal_c, update)
            remeasure_noisy(backend, lut.entries, pool, artifacts, ref.key,
                            replace(one_pass, ops=False), drift, update)
        finally:
            bar.close()
        measure_s = time.perf_counter() - t_measure
        medians = drift["medians_ms"]
        drift["max_change"] = round(max(medians) / min(medians) - 1, 4) if medians else 0.0
        if drift["max_change"] > DRIFT_WARN:
            print(f"warning: the reference block moved {drift['max_change']:.0%} during the run "
                  "(other load or throttling); re-measure on a quiet device for a clean LUT",
                  file=sys.stderr)
        t_cal = time.perf_counter()
        if addition is None:  # an addition keeps the fit of the build it extends
            if lut.measurement.calibration_checks is None:
                lut.measurement.calibration_checks = {}
            lut.summation = fit_summation(lut, backend, space, s, calibration, exporter,
                                          lut.measurement.calibration_checks, passes)
        calibrate_s = time.perf_counter() - t_cal
    lut.measurement.complete = True
    wall_s = {"total": round(time.perf_counter() - t_start, 1),
              "export": round(export_stats.wall_s, 1), "measure": round(measure_s, 1),
              "calibrate": round(calibrate_s, 1)}
    built = stability(lut)
    _record(lut, addition, stability=built, wall_s=wall_s)
    load_record["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    lut.save(out)
    if out != target_path:
        os.replace(out, target_path)
    warn_if_host_was_busy(cfg.target.profile.kind, load_record)
    return {"lut": str(target_path), "entries": len(lut.entries), "measured_now": len(todo),
            "exported": export_stats.exported, "cached": export_stats.cached,
            "wall_s": wall_s, "drift": drift, "stability": built,
            "summation": {"method": lut.summation.method, "scale": lut.summation.scale,
                          "network_offset_ms": lut.summation.network_offset_ms,
                          "speed_ratio": (lut.summation.fit or {}).get("speed_ratio")},
            "title": lut.title}
