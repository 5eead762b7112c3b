"""Noise-robust LUT builds, without a runtime: a scripted device returns synthetic timings, and
the build's defences (settling, dropped rounds, re-run jobs, re-measured entries, thermal
pauses), the median's confidence interval, the LUT's interval fields and validate's noise
statement are checked against what the timings make certain."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fbnet.arch import named_architecture
from fbnet.errors import UserError
from fbnet.lut import LutEntry, OpLatency, load_lut
from profiler import jobs, noise
from profiler.jobs import RunPool
from profiler.backends.base import Program
from profiler.export import ExportJob
from profiler.measure import Stats, median_ci
from profiler.noise import SpeedBlock, speed_blocks, speed_ratio
from profiler.protocol import BenchResult, InputSpec, ProgramResult, RunnerInfo
from profiler.settings import Settings
from profiler.validate import Row, architectures, noise_check

ROOT = Path(__file__).resolve().parents[1]
REF = "FC_Cin8_Cout4"
BLOCKS = ["FC_Cin8_Cout2", "FC_Cin8_Cout3"]


class Art:
    """An exported program as profiler.jobs sees one (no file is ever read)."""

    def __init__(self, key):
        self.job = ExportJob(key, (1, 8))
        self.program = Path(f"/nonexistent/{key}.pte")
        self.etrecord = None

    def to_program(self):
        return Program(self.job.key, self.program, [InputSpec([1, 8])])


class ScriptedDevice:
    """Runs jobs by the protocol's shape (rounds x runs per program) with timings from
    `timing(key, job, round) -> ms`; `thermal(job) -> {zone: celsius}` after each job."""

    def __init__(self, timing, thermal=None):
        self.timing, self.thermal = timing, thermal
        self.jobs: list[list[str]] = []

    def push_artifacts(self, programs):
        pass

    def run_job(self, manifest):
        job = len(self.jobs)
        self.jobs.append([p.id for p in manifest.programs])
        per_round = manifest.iters_per_round
        programs = []
        for spec in manifest.programs:
            rounds = [[self.timing(spec.id, job, r)] * per_round for r in range(manifest.rounds)]
            programs.append(ProgramResult(spec.id, spec.path, latencies_ms=sum(rounds, []),
                                          rounds=rounds))
        device = {"thermal_after_c": self.thermal(job)} if self.thermal else {}
        return BenchResult(RunnerInfo("scripted"), device=device, programs=programs)


def arts(*keys):
    return [Art(k) for k in keys]


# --- the median's confidence interval --------------------------------------------------------
def test_median_ci_is_deterministic_and_holds_the_median():
    rng = np.random.default_rng(3)
    rounds = [list(1.0 + 0.01 * rng.standard_normal(10)) for _ in range(5)]
    runs = sum(rounds, [])
    low, high = median_ci(rounds)
    assert (low, high) == median_ci(rounds)
    assert low < float(np.median(runs)) < high
    assert median_ci([]) == (None, None)
    assert median_ci([[2.0, 2.0, 2.0]]) == (2.0, 2.0)


def test_rounds_that_disagree_widen_the_interval():
    """The same 50 runs, once spread evenly over the rounds and once with each round at its own
    level: resampling rounds must make the second interval wider."""
    levels = [1.0, 1.05, 1.10, 1.15, 1.20]
    by_level = [[v] * 10 for v in levels]
    mixed = [levels * 2 for _ in levels]
    wide, narrow = median_ci(by_level), median_ci(mixed)
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])
    stats = Stats.of(sum(by_level, []), by_level)
    assert (stats.ci_low_ms, stats.ci_high_ms) == wide


# --- re-measuring -----------------------------------------------------------------------------
def test_a_round_with_a_slow_reference_is_dropped_and_measured_again():
    """Round 2 of the first job runs during a burst (everything 3x slower): that round goes from
    every program and a one-round make-up job replaces it."""
    def timing(key, job, rnd):
        return 3.0 if (job, rnd) == (0, 2) else 1.0

    device = ScriptedDevice(timing)
    drift = {"medians_ms": [1.0]}
    results, ref_ms = noise.measure_chunk(device, arts(*BLOCKS, REF), REF, Settings(), drift)
    assert ref_ms == 1.0 and drift["rounds_dropped"] == 1 and len(device.jobs) == 2
    for key in BLOCKS:
        assert len(results[key].rounds) == Settings().rounds
        assert results[key].latencies_ms == [1.0] * Settings().iters


def test_a_job_that_ran_during_a_burst_is_run_again():
    device = ScriptedDevice(lambda key, job, rnd: 10.0 if job < 2 else 1.0)
    drift = {"medians_ms": [1.0]}
    results, ref_ms = noise.measure_chunk(device, arts("FC_Cin8_Cout2", REF), REF, Settings(),
                                        drift)
    assert ref_ms == 1.0 and drift["retries"] == 2 and len(device.jobs) == 3
    assert set(results["FC_Cin8_Cout2"].latencies_ms) == {1.0}


def test_retries_are_bounded_on_a_device_that_never_calms_down():
    device = ScriptedDevice(lambda key, job, rnd: 10.0)
    drift = {"medians_ms": [1.0]}
    _, ref_ms = noise.measure_chunk(device, arts("FC_Cin8_Cout2", REF), REF, Settings(), drift)
    assert ref_ms == 10.0 and drift["retries"] == noise.RETRIES
    assert len(device.jobs) == noise.RETRIES + 1


def test_a_hot_phone_pauses_and_the_job_is_flagged_and_run_again(monkeypatch):
    monkeypatch.setattr(noise, "THERMAL_PAUSE_S", 0.0)
    baseline = {"cpu0": 40.0, "battery": 30.0}
    device = ScriptedDevice(lambda key, job, rnd: 1.0,
                            thermal=lambda job: {"cpu0": 55.0 if job == 0 else 42.0,
                                                 "battery": 31.0})
    drift = {"medians_ms": []}
    noise.measure_chunk(device, arts("FC_Cin8_Cout2", REF), REF, Settings(), drift, baseline)
    assert drift["thermal_flags"] == 1 and drift["max_thermal_rise_c"] == 15.0
    assert len(device.jobs) == 2
    # a device without temperatures (the host) is never paused
    assert noise.thermal_rise_c(BenchResult(RunnerInfo("x")), baseline) == 0.0


def test_settle_runs_until_the_reference_is_steady():
    """The reference reads slow while the device ramps up (first 4 jobs), then steady."""
    device = ScriptedDevice(lambda key, job, rnd: [2.0, 1.6, 1.3, 1.1][job] if job < 4 else 1.0)
    drift = {}
    noise.settle(device, Art(REF), Settings(), drift)
    assert drift["settled"] and drift["settle_ms"] == [2.0, 1.6, 1.3, 1.1, 1.0, 1.0, 1.0]
    drifting = ScriptedDevice(lambda key, job, rnd: 1.0 + 0.1 * job)
    noise.settle(drifting, Art(REF), Settings(), drift)
    assert not drift["settled"] and len(drifting.jobs) == noise.SETTLE_JOBS


def empty_lut(tmp_path):
    lut = load_lut(ROOT / "luts" / "host_32.json")
    lut.entries = {}
    lut.save(tmp_path / "lut.json")
    return lut


def test_jobs_slower_than_the_build_settled_to_are_measured_again(tmp_path):
    """The first job ran before the device had settled (reference 1.5x): once all jobs are in,
    it is measured again, its runs replace that job's in the pool and its entries are remade."""
    device = ScriptedDevice(lambda key, job, rnd: 1.5 if job == 0 else 1.0)
    artifacts = {a.job.key: a for a in arts(*BLOCKS, REF)}
    lut = empty_lut(tmp_path)
    drift = {"medians_ms": []}
    pool, measured = jobs.RunPool(), []

    def update(keys):
        for key in keys:
            lut.entries[key] = jobs.measured_entry(pool.pooled(key), artifacts[key], None,
                                                   Settings())
        lut.save(tmp_path / "lut.json")

    for part in ([BLOCKS[0]], [BLOCKS[1]]):
        results, ref_ms = noise.measure_part(device, part, artifacts, REF, Settings(), drift, {})
        for key in part:
            pool.put(key, "pass0", results[key])
        drift["medians_ms"].append(ref_ms)
        measured.append((part, len(drift["medians_ms"]) - 1, "pass0"))
        update(part)
    assert drift["medians_ms"] == [1.5, 1.0] and lut.entries[BLOCKS[0]].latency_ms == 1.5
    noise.recheck_drift(device, measured, pool, artifacts, REF, Settings(), drift, {}, update)
    assert drift["medians_ms"] == [1.0, 1.0] and drift["rechecked"] == 1
    assert pool.jobs(BLOCKS[0]) == 1 and lut.entries[BLOCKS[0]].latency_ms == 1.0
    assert load_lut(tmp_path / "lut.json").entries[BLOCKS[0]].latency_ms == 1.0


def test_noisy_entries_are_measured_in_more_jobs_up_to_a_bound():
    """BLOCKS[0]'s rounds disagree in the first job (1.0 / 1.1 alternating): its interval is
    wide, so it is measured in another job whose steady rounds are pooled with them, narrowing
    the interval. BLOCKS[1] is steady and never re-measured. A key whose rounds keep a 10%
    spread stays noisy: at most RETRIES more jobs, then it is counted as unsettled."""
    def timing(key, job, rnd):
        if key == BLOCKS[0] and job == 0:
            return [1.0, 1.1][rnd % 2]
        if key == "FC_Cin8_Cout5":
            return [1.0, 1.1][rnd % 2]
        return 1.0

    keys = [*BLOCKS, "FC_Cin8_Cout5"]
    artifacts = {a.job.key: a for a in arts(*keys, REF)}
    device = ScriptedDevice(timing)
    first = jobs.run_programs(device, list(artifacts.values()), Settings())
    entries = {k: jobs.measured_entry(first[k], artifacts[k], None, Settings()) for k in keys}
    pool = jobs.RunPool()
    for k in keys:
        pool.put(k, "pass0", first[k])
    assert noise.noisy(entries[BLOCKS[0]]) and not noise.noisy(entries[BLOCKS[1]])
    before = entries[BLOCKS[0]].ci_half_ms
    drift = {}

    def remake(keys):
        for key in keys:
            entries[key] = jobs.measured_entry(pool.pooled(key), artifacts[key], None,
                                               Settings())

    noise.remeasure_noisy(device, entries, pool, artifacts, REF, Settings(), drift, remake)
    assert entries[BLOCKS[0]].ci_half_ms < before and entries[BLOCKS[0]].latency_ms == 1.0
    # the first job's runs are pooled with the second's, not thrown away
    assert pool.jobs(BLOCKS[0]) == 2 and entries[BLOCKS[0]].n == 2 * Settings().iters
    assert pool.jobs(BLOCKS[1]) == 1
    assert all(BLOCKS[1] not in job for job in device.jobs[1:])
    assert len(device.jobs) == 1 + noise.RETRIES and drift["unsettled"] == 1
    assert all(REF in job for job in device.jobs[1:])


def test_networks_are_timed_in_passes_of_freshly_grouped_jobs():
    """validate's and the calibration's networks: each program's rounds over the passes, the
    jobs of each pass grouped afresh, every run pooled; passes above the rounds: one line."""
    keys = [f"FC_Cin8_Cout{n}" for n in range(2, 12)]
    device = ScriptedDevice(lambda key, job, rnd: 1.0 + job)
    done = []
    pool = jobs.measure_in_passes(device, arts(*keys), Settings(), 5, 4, done.append)
    assert len(device.jobs) == 5 * 3 and sum(done) == 5 * len(keys)
    groupings = {frozenset(frozenset(j) for j in device.jobs[3 * n:3 * n + 3]) for n in range(5)}
    assert len(groupings) > 1  # not the same jobs five times
    for key in keys:
        pooled = pool.pooled(key)
        assert pool.jobs(key) == 5 and len(pooled.rounds) == Settings().rounds
        assert len(pooled.latencies_ms) == Settings().iters
    with pytest.raises(UserError, match="--passes must be between 1 and --rounds"):
        jobs.measure_in_passes(device, arts(*keys), Settings(), Settings().rounds + 1, 4)


def test_a_pool_of_jobs_is_one_result_of_all_their_rounds():
    pool = jobs.RunPool()
    a = ProgramResult("k", "/p", rounds=[[1.0, 1.0]], latencies_ms=[1.0, 1.0], etdump="/d")
    b = ProgramResult("k", "/p", rounds=[[2.0, 2.0]], latencies_ms=[2.0, 2.0])
    pool.put("k", "pass0", a)
    assert pool.pooled("k") is a  # one job: as measured, with its ETDump
    pool.put("k", "pass1", b)
    both = pool.pooled("k")
    assert both.rounds == [[1.0, 1.0], [2.0, 2.0]] and both.latencies_ms == [1.0, 1.0, 2.0, 2.0]
    assert both.etdump is None  # parsed once, from the first job
    pool.put("k", "pass1", a)  # measured again under its label: replaces
    assert pool.jobs("k") == 2 and pool.pooled("k").latencies_ms == [1.0] * 4


def test_typical_rounds_leave_out_a_round_slowed_by_other_load():
    rounds = [[1.0] * 4, [1.02] * 4, [2.0] * 4, [0.99] * 4]
    assert jobs.typical_rounds(rounds) == [rounds[0], rounds[1], rounds[3]]
    assert jobs.typical_rounds(rounds[:3]) == rounds[:3]  # too few rounds to tell


def test_remeasured_entries_keep_their_per_op_breakdown():
    result = ProgramResult(BLOCKS[0], "x", latencies_ms=[1.0] * 10, rounds=[[1.0] * 5] * 2)
    old = LutEntry(1.2, ops=[], extra={"method_execute_ms": 0.9, "transpose_boundary_ms": 0.05,
                                       "call_overhead_ms": 0.3})
    entry = jobs.measured_entry(result, Art(BLOCKS[0]), None, Settings(), per_op_from=old)
    # runs pooled from other jobs keep the call's share of the median that the job with the
    # ETDump saw (0.3 of 1.2), not that job's execute time subtracted from their median
    assert entry.extra["call_overhead_ms"] == pytest.approx(0.25)
    assert entry.boundary_ms == pytest.approx(0.30)
    first = jobs.measured_entry(result, Art(BLOCKS[0]), None, Settings(),
                                per_op_from=LutEntry(1.2, ops=[], extra={
                                    "method_execute_ms": 0.9, "transpose_boundary_ms": 0.05}))
    assert first.extra["call_overhead_ms"] == pytest.approx(0.1)  # no share yet: subtracted


# --- the LUT format ---------------------------------------------------------------------------
def test_luts_without_intervals_still_load(tmp_path):
    """LUTs written before entries had intervals (the shipped host builds; the entries added
    to them later have intervals) load unchanged; the new fields round-trip when present."""
    lut = load_lut(ROOT / "luts" / "host.json")
    added = {k for record in lut.provenance.details["additions"] for k in record["keys"]}
    assert all(e.ci_half_ms is None for k, e in lut.entries.items() if k not in added)
    assert all(lut.entries[k].ci_half_ms is not None for k in added)
    arch = named_architecture("fbnet_b")
    assert lut.network_ci_half_ms(layer.key for layer in arch.layers()) is None
    data = json.loads((ROOT / "luts" / "host.json").read_text())
    key = next(iter(data["entries"]))
    data["entries"][key].update(ci_low_ms=0.1, ci_high_ms=0.3)
    (tmp_path / "new.json").write_text(json.dumps(data))
    entry = load_lut(tmp_path / "new.json").entries[key]
    assert entry.ci_half_ms == pytest.approx(0.1)
    assert entry.to_dict()["ci_low_ms"] == 0.1
    data["entries"][key]["ci_low_ms"] = "low"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(Exception, match="ci_low_ms"):
        load_lut(tmp_path / "bad.json")


def test_network_interval_adds_repeated_blocks_linearly(tmp_path):
    shutil.copy(ROOT / "luts" / "host_32.json", tmp_path / "l.json")
    lut = load_lut(tmp_path / "l.json")
    a, b = list(lut.entries)[:2]
    for entry in lut.entries.values():
        entry.ci_low_ms = entry.ci_high_ms = entry.latency_ms
    lut.entries[a].ci_low_ms, lut.entries[a].ci_high_ms = 0.0, 0.2  # +-0.1
    lut.entries[b].ci_low_ms, lut.entries[b].ci_high_ms = 0.0, 0.2
    scale = lut.summation.scale
    assert lut.network_ci_half_ms([a, a]) == pytest.approx(scale * 0.2)
    assert lut.network_ci_half_ms([a, b]) == pytest.approx(scale * 0.1 * 2 ** 0.5)


# --- validate's noise statement ---------------------------------------------------------------
def rows(errors_pct, lut_ci_pct=2.0, measured_ci_pct=1.0):
    return [Row(f"random_{i}", "x", 1.0, 1.0 + e / 100, 1.0, measured_ci_pct, lut_ci_pct)
            for i, e in enumerate(errors_pct)]


def test_validate_says_whether_the_luts_noise_explains_the_error():
    lut = load_lut(ROOT / "luts" / "host_32.json")
    lut.summation.fit = {}  # no calibration residuals: only the intervals count
    small = noise_check(rows([1.0, -1.5, 2.0, 0.5, -2.0, 1.0, 0.0, 1.2, -0.7, 1.9]), lut)
    assert small["explained"] is True and "explains the error" in small["statement"]
    assert small["median_interval_pct"] == pytest.approx(5 ** 0.5, abs=0.01)
    big = noise_check(rows([8.0, 9.0, 7.5, 10.0, 1.0, 8.5, 9.5, 7.0, 8.0, 9.0]), lut)
    assert big["explained"] is False and "larger than the LUT's own noise" in big["statement"]
    assert "+7.8%" in big["statement"]
    unknown = noise_check(rows([8.0, 9.0], lut_ci_pct=None), lut)
    assert unknown["explained"] is None and "no per-entry intervals" in unknown["statement"]


def test_a_machine_that_moved_is_named_with_its_ratio():
    """The blocks timed again beside the networks read the machine's speed against the
    build's: their median ratio, named in the statement once it is more than 3% off."""
    lut = load_lut(ROOT / "luts" / "host_32.json")
    lut.summation.fit = {}
    blocks = [SpeedBlock("a", 1.0, 1.10), SpeedBlock("b", 2.0, 2.16), SpeedBlock("c", 0.5, 0.9)]
    ratio = speed_ratio(blocks)
    assert ratio == pytest.approx(1.1) and speed_ratio([]) is None
    big = rows([-8.0, -9.0, -7.5, -10.0, -8.5])
    moved = noise_check(big, lut, ratio)
    assert moved["machine_moved"] and "x1.100 of the build's time now" in moved["statement"]
    still = noise_check(big, lut, 1.02)
    assert not still["machine_moved"] and "load or state differs" in still["statement"]


def test_speed_blocks_spread_over_the_networks_blocks_without_skips():
    lut = load_lut(ROOT / "luts" / "host_32.json")
    archs = architectures(lut, lut.space, 5, 0, named=False)
    used = {layer.key for a in archs for layer in a.layers()}
    keys = speed_blocks(lut, archs)
    assert len(keys) == len(set(keys)) == 8 and set(keys) <= used
    assert not any(k.startswith("Skip_") for k in keys)
    priced = sorted(lut.entries[k].latency_ms for k in used if not k.startswith("Skip_"))
    ms = [lut.entries[k].latency_ms for k in keys]
    assert ms == sorted(ms) and ms[0] == priced[0] and ms[-1] == priced[-1]
    blocks = (k for k in used if not k.startswith("Skip_"))
    assert speed_blocks(lut, archs, count=500) == sorted(
        blocks, key=lambda k: (lut.entries[k].latency_ms, k))


def test_calibration_residuals_count_as_the_luts_noise():
    lut = load_lut(ROOT / "luts" / "host_32.json")
    lut.summation.fit = {"networks": [{"error_pct": e} for e in (3.0, -3.0, 3.0, -3.0)]}
    report = noise_check(rows([5.0, -5.0, 4.0]), lut)
    assert report["explained"] and report["calibration_fit_pct"] == pytest.approx(1.96 * 3)


# --- progress ---------------------------------------------------------------------------------
def test_progress_lines_print_a_line_per_tenth(capsys):
    bar = jobs.Progress(20, "measure", "lines")
    for _ in range(20):
        bar.update()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].startswith("measure: 2/20")
    assert lines[-1].startswith("measure: 20/20")
    quiet = jobs.Progress(20, "measure", "none")
    quiet.update(20)
    assert capsys.readouterr().out == ""


def test_progress_lines_and_json_do_not_mix(cli):
    proc = cli("profiler.run", "--json", "--progress", "lines")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--progress lines" in proc.stderr


def test_the_pool_gives_each_entry_its_ratio_to_its_jobs_reference():
    """Two jobs on a machine that slowed down by half between them: the absolute times
    disagree, the ratio to the reference timed in the same job does not."""
    pool = RunPool()
    fast_ref, slow_ref = ProgramResult("ref", "r", latencies_ms=[1.0, 1.0, 1.0]), \
        ProgramResult("ref", "r", latencies_ms=[1.5, 1.5, 1.5])
    pool.put("k", "pass0", ProgramResult("k", "p", latencies_ms=[2.0, 2.1, 1.9]), fast_ref)
    pool.put("k", "pass1", ProgramResult("k", "p", latencies_ms=[3.0, 3.15, 2.85]), slow_ref)
    assert pool.ref_ratio("k") == pytest.approx(2.0)
    pool.put("k", "pass1", ProgramResult("k", "p", latencies_ms=[3.0]))  # re-measured, no ref
    assert pool.ref_ratio("k") == pytest.approx(2.0)  # from pass0 alone
    assert pool.ref_ratio("other") is None
    entry = LutEntry(2.0, min_ms=1.9, ops=[OpLatency("conv", "conv_1x1", 1.5)],
                     extra={"call_overhead_ms": 0.2, "energy_mj": 3.0}, ref_ratio=2.0, n=3)
    slower = entry.scaled(1.5)
    assert (slower.latency_ms, slower.min_ms, slower.ops[0].latency_ms) == (3.0, 2.85, 2.25)
    assert slower.extra == {"call_overhead_ms": 0.3, "energy_mj": 3.0}
    assert (slower.ref_ratio, slower.n) == (2.0, 3)  # ratios and counts stay
