"""Can this LUT be trusted? Measure whole networks on the device and compare with the LUT.

Draws N random architectures of the LUT's space (plus the named ones that fit it, and any
given with --arch, such as a search's arch.json), exports
and measures each whole network end to end with the LUT's own settings (runtime, delegate,
dtype, threads), and compares with the latency the LUT predicts (`Lut.price`, summation
included). Reports MAPE, median/max absolute error, the fraction within +-10%, Kendall tau and
Spearman rank correlations, for the LUT and for a plain sum of its entries. A few of the LUT's
own blocks are timed again beside the networks: their ratio to their entries is how fast the
machine runs now against the build (heat, other load), and the figures are also given with
that ratio divided out. With --record, the
summary (date, machine load, figures, noise statement) is appended to the LUT's own
measurement record, so the LUT carries every validation it has had.

Examples:
  python -m profiler.validate --lut luts/host.json --device host --samples 50 --seed 0
  python -m profiler.validate --lut luts/host_32.json --samples 20 --record
  python -m profiler.validate --lut luts/host_32.json --samples 20 --json --plot fidelity.png
  python -m profiler.validate --lut runs/demo/luts/host_32.json --samples 0 --no-named \
      --arch runs/demo/search/s8/arch.json runs/demo/search/host/arch.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fbnet.arch import NAMED_ARCHITECTURES, Architecture, load_architecture, to_arch_string
from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_json
from fbnet.lut import Lut, LutEntry, Summation, load_lut
from fbnet.metrics import errors_pct, kendall_tau, mape_pct, median_abs_error_pct, spearman_rho
from fbnet.space import SpaceConfig
from profiler.calibration import random_architecture
from profiler.export import DEFAULT_CACHE, ArtifactCache
from profiler.jobs import (Exporter, Progress, arch_job, measure_in_passes, measured_entry,
                           pass_share)
from profiler.measure import CI_LEVEL
from profiler.noise import speed_block_jobs, speed_ratio, timed_blocks
from profiler.settings import (CLOCKS, Target, add_target_arguments, remeasure_settings,
                               target_from_args)

TARGETS = {"median_abs_error_pct": 5.0, "within_10pct": 0.90, "kendall_tau": 0.90}
# The noise explains the error when at least this fraction of networks is within its interval
# (the intervals are 95% ones: a few networks outside them are expected).
EXPLAINED_FRACTION = 0.90
Z_95 = 1.96  # a calibration RMS error (one standard deviation) as a 95% half-width
# A speed ratio this far from 1 is named in the noise statement as the machine having moved.
SPEED_MOVED = 0.03


@dataclass(frozen=True)
class ValidateSettings:
    """One validation: the LUT, where to measure, which networks, how long to time them."""

    lut: str  # the LUT's path, as given
    target: Target = Target()
    samples: int = 50  # random architectures
    seed: int = 0
    named: bool = True  # also the named architectures the LUT covers
    archs: tuple[str, ...] = ()  # also these: named ones or architecture JSON files
    warmup: int = 5
    iters: int = 30
    rounds: int = 3
    passes: int | None = None  # sets of jobs the rounds are spread over; None: one per round
    clock: str = "auto"  # auto: the clock the LUT was measured with
    workers: int = 2
    cache: Path = DEFAULT_CACHE
    out: Path | None = None  # also write the rows and metrics here
    plot: Path | None = None  # scatter plot PNG
    progress: str = "bar"  # bar | none
    record: bool = False  # append the summary to the LUT's measurement.validations


@dataclass
class Row:
    name: str
    arch_string: str
    measured_ms: float
    predicted_ms: float
    plain_sum_ms: float
    measured_ci_pct: float | None = None  # 95% half-widths, % of the value
    lut_ci_pct: float | None = None  # from the LUT's entry intervals

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_ms - self.measured_ms) / self.measured_ms


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m profiler.validate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", required=True, help="the LUT to check")
    add_target_arguments(p)
    p.add_argument("--samples", type=int, default=50, help="random architectures (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random architectures")
    p.add_argument("--no-named", action="store_true", help="skip the named architectures")
    p.add_argument("--arch", nargs="+", default=[], help="also these networks: named ones or "
                   "architecture JSON files (a search's arch.json)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per network per round")
    p.add_argument("--iters", type=int, default=30, help="timed runs per network")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds")
    p.add_argument("--passes", type=int, help="sets of freshly grouped jobs the rounds are "
                   "spread over, as profiler.run does (default: one per round)")
    p.add_argument("--clock", choices=CLOCKS, default="auto",
                   help="default: the clock the LUT was measured with")
    p.add_argument("--workers", type=int, default=2, help="export processes")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="artifact cache folder")
    p.add_argument("--out", type=Path, help="also write the per-network rows and metrics here")
    p.add_argument("--plot", type=Path, help="scatter plot PNG: predicted vs measured")
    p.add_argument("--record", action="store_true",
                   help="append the summary to the LUT's measurement record (the file is "
                        "rewritten atomically; its entries are not touched)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.samples < 0 or args.iters < 1 or args.rounds < 1 or args.warmup < 0:
        raise UserError("--samples and --warmup must be >= 0, --iters and --rounds >= 1")
    return args


def settings_from(args) -> ValidateSettings:
    return ValidateSettings(
        args.lut, target_from_args(args), samples=args.samples,
        seed=args.seed, named=not args.no_named, archs=tuple(args.arch), warmup=args.warmup,
        iters=args.iters, rounds=args.rounds, passes=args.passes, clock=args.clock,
        workers=args.workers, cache=args.cache, out=args.out, plot=args.plot,
        progress="none" if args.quiet else "bar", record=args.record)


def architectures(lut: Lut, space: SpaceConfig, samples: int, seed: int,
                  named: bool, given: tuple[str, ...] = ()) -> list[Architecture]:
    """The random samples, the named architectures the LUT covers, and the given ones (which
    the LUT must cover: the caller checks)."""
    rng = random.Random(seed)
    archs = [random_architecture(space, rng, f"random_{i}") for i in range(samples)]
    if named:
        for name in NAMED_ARCHITECTURES:
            arch = load_architecture(name, resolution=space.resolution,
                                     num_classes=space.num_classes)
            if not lut.missing_keys(layer.key for layer in arch.layers()):
                archs.append(arch)  # named nets with their own widths/heads need their own LUT
    archs += [load_architecture(spec, resolution=space.resolution) for spec in given]
    seen: dict[str, int] = {}
    unique = []
    for arch in archs:  # rows are keyed by name, and two searches' arch.json can share one
        seen[arch.name] = seen.get(arch.name, 0) + 1
        unique.append(arch if seen[arch.name] == 1 else
                      replace(arch, name=f"{arch.name}_{seen[arch.name]}"))
    return unique


def metrics(measured, predicted) -> dict:
    m, p = np.asarray(measured), np.asarray(predicted)
    err = errors_pct(m, p)
    result = {"n": int(m.size), "mape": mape_pct(m, p),
              "median_abs_error_pct": median_abs_error_pct(m, p),
              "max_abs_error_pct": float(np.max(np.abs(err))),
              "mean_error_pct": float(np.mean(err)),
              "within_5pct": float(np.mean(np.abs(err) <= 5.0)),
              "within_10pct": float(np.mean(np.abs(err) <= 10.0))}
    if m.size > 1:
        result["kendall_tau"] = kendall_tau(m, p)
        result["spearman"] = spearman_rho(m, p)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def plot(rows: list[Row], lut: Lut, summary: dict, path: Path) -> None:
    import matplotlib  # seconds to load: only where a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array([r.measured_ms for r in rows])
    p = np.array([r.predicted_ms for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = min(m.min(), p.min()) * 0.95, max(m.max(), p.max()) * 1.05
    xs = np.linspace(lo, hi, 10)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="+-10%")
    ax.plot(xs, xs, "k--", lw=0.8)
    ax.scatter(m, [r.plain_sum_ms for r in rows], s=12, c="tab:gray", alpha=0.6,
               label="plain sum of entries")
    ax.scatter(m, p, s=14, c="tab:blue", label="LUT prediction")
    for r in rows:
        if not r.name.startswith("random_"):
            ax.annotate(r.name, (r.measured_ms, r.predicted_ms), fontsize=7)
    s = summary["lut"]
    ax.set_xlabel("measured network latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{lut.title}\nmedian |err| {s['median_abs_error_pct']:.1f}%, within 10% "
                 f"{s['within_10pct']:.0%}, tau {s.get('kendall_tau', float('nan')):.3f}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def noise_check(rows: list[Row], lut: Lut, ratio: float | None = None) -> dict:
    """Does the LUT's own noise explain the errors? Each network's error is compared with the
    95% interval its prediction and measurement carry: the LUT's entry intervals added up
    (`Lut.network_ci_half_ms`), the network's measured interval, and the calibration fit's
    RMS error (how well the summation describes the networks it was fitted on). `ratio`: the
    machine's speed now against the build's, named when it has moved."""
    fit_rows = (lut.summation.fit or {}).get("networks") or []
    fit_errors = [r["error_pct"] for r in fit_rows if "error_pct" in r]
    fit_pct = Z_95 * float(np.sqrt(np.mean(np.square(fit_errors)))) if len(fit_errors) >= 3 \
        else 0.0
    if all(r.lut_ci_pct is None for r in rows):
        return {"explained": None, "statement": "the LUT records no per-entry intervals (an "
                "imported, estimated or older LUT): rebuild it with profiler.run to tell its "
                "noise from its error"}
    allowed = np.array([np.sqrt((r.lut_ci_pct or 0) ** 2 + (r.measured_ci_pct or 0) ** 2
                                + fit_pct ** 2) for r in rows])
    err = np.array([r.error_pct for r in rows])
    inside = int(np.sum(np.abs(err) <= allowed))
    fraction = inside / len(rows)
    parts = (f"median +-{np.median(allowed):.1f}%: entries +-"
             f"{np.median([r.lut_ci_pct or 0 for r in rows]):.1f}%, measurement +-"
             f"{np.median([r.measured_ci_pct or 0 for r in rows]):.1f}%, calibration fit "
             f"+-{fit_pct:.1f}%")
    explained = fraction >= EXPLAINED_FRACTION
    moved = ratio is not None and abs(ratio - 1) > SPEED_MOVED
    if explained:
        statement = (f"the LUT's own noise explains the error: {inside} of {len(rows)} networks "
                     f"are within their {CI_LEVEL:.0%} interval ({parts})")
    else:
        statement = (f"the error is larger than the LUT's own noise explains: {inside} of "
                     f"{len(rows)} networks within their {CI_LEVEL:.0%} interval ({parts}); "
                     f"mean error {np.mean(err):+.1f}%: " + (
                         f"the machine runs x{ratio:.3f} of the build's time now (the LUT's "
                         "own blocks, timed again)" if moved else
                         "the machine's load or state differs from the build's, or the "
                         "summation does not fit these networks"))
    return {"explained": explained, "machine_moved": moved,
            "within_interval": round(fraction, 4),
            "median_interval_pct": round(float(np.median(allowed)), 2),
            "calibration_fit_pct": round(fit_pct, 2), "statement": statement}


def network_row(arch: Architecture, measured: LutEntry, lut: Lut, plain: Lut) -> Row:
    predicted = lut.price(arch).total_ms
    lut_half = lut.network_ci_half_ms(layer.key for layer in arch.layers())
    return Row(arch.name, to_arch_string(arch), round(measured.latency_ms, 4),
               round(predicted, 4), round(plain.price(arch).total_ms, 4),
               measured_ci_pct=None if measured.ci_half_ms is None else
               round(100 * measured.ci_half_ms / measured.latency_ms, 3),
               lut_ci_pct=None if lut_half is None else round(100 * lut_half / predicted, 3))


def validation_record(report: dict, started: datetime, load_before: float) -> dict:
    """What --record keeps in the LUT: when, under what load, and the figures."""
    keys = ("device", "clock", "samples", "seed", "networks", "mape", "median_abs_error_pct",
            "max_abs_error_pct", "within_10pct", "kendall_tau", "spearman", "meets_targets",
            "speed_ratio")
    noise = report["noise"]
    return {"date": started.isoformat(timespec="seconds"),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            **{k: report[k] for k in keys if k in report},
            "at_build_speed_median_abs_error_pct": (report["at_build_speed"] or {}).get(
                "median_abs_error_pct"),
            "noise_explains_error": noise.get("explained"), "noise": noise["statement"]}


def validate(cfg: ValidateSettings) -> tuple[dict, list[Row], Lut]:
    started, load_before = datetime.now(timezone.utc), os.getloadavg()[0]
    lut = load_lut(cfg.lut)
    if lut.space is None:
        raise UserError(f"{cfg.lut} does not record its space; re-create it with profiler.run")
    space = lut.space
    profile = cfg.target.profile
    s = remeasure_settings(lut, cfg.lut, cfg.target, warmup=cfg.warmup, iters=cfg.iters,
                           rounds=cfg.rounds, clock=cfg.clock)
    if profile.name != lut.device.name:
        print(f"warning: {cfg.lut} was measured on {lut.device.name}, validating on "
              f"{profile.name}", file=sys.stderr)
    clock = s.clock
    passes = s.rounds if cfg.passes is None else cfg.passes
    one_pass = pass_share(s, passes)  # a one-line error for passes outside 1..rounds
    archs = architectures(lut, space, cfg.samples, cfg.seed, cfg.named, cfg.archs)
    if not archs:
        raise UserError("nothing to validate: use --samples 1 or more, or --arch")
    lut.require({layer.key for a in archs for layer in a.layers()}, "the sampled networks")
    exporter = Exporter(ArtifactCache(cfg.cache), cfg.workers, cfg.progress)
    jobs = {a.name: arch_job(a, s) for a in archs}
    block_jobs = speed_block_jobs(lut, archs, s)
    artifacts, _ = exporter.export([*jobs.values(), *block_jobs.values()],
                                   etrecord=False)  # timed without ETDump
    with cfg.target.open(s, "validate") as backend:
        bar = Progress.measuring(len(artifacts), passes, cfg.progress)
        try:
            # a few networks per job: round-robin within it, bounded memory for 224 nets
            pool = measure_in_passes(backend, list(artifacts.values()), s, passes, 10,
                                     bar.update)
        finally:
            bar.close()
    measured = {a.name: measured_entry(pool.pooled(jobs[a.name].key), artifacts[jobs[a.name].key],
                                       None, one_pass) for a in archs}
    blocks = timed_blocks(lut, block_jobs, pool, artifacts, one_pass)
    ratio = speed_ratio(blocks)
    plain = replace(lut, summation=Summation())
    rows = [network_row(a, measured[a.name], lut, plain) for a in archs]
    m = [r.measured_ms for r in rows]
    predicted = [r.predicted_ms for r in rows]
    summary = {"lut": metrics(m, predicted),
               "plain_sum": metrics(m, [r.plain_sum_ms for r in rows])}
    report = {"lut_path": str(cfg.lut), "lut_title": lut.title, "device": profile.name,
              "clock": clock, "resolution": space.resolution, "runtime": lut.runtime.name,
              "samples": cfg.samples, "seed": cfg.seed, "passes": passes,
              "networks": len(rows),
              **summary["lut"], "plain_sum": summary["plain_sum"],
              "summation": asdict(lut.summation) | {"fit": None},
              "speed_ratio": ratio,
              "speed_blocks": [b.record() for b in blocks],
              "at_build_speed": metrics(np.asarray(m) / ratio, predicted) if ratio else None,
              "noise": noise_check(rows, lut, ratio),
              "targets": TARGETS,
              "meets_targets": bool(summary["lut"]["median_abs_error_pct"] <=
                                    TARGETS["median_abs_error_pct"]
                                    and summary["lut"]["within_10pct"] >= TARGETS["within_10pct"]
                                    and summary["lut"].get("kendall_tau", 0) >=
                                    TARGETS["kendall_tau"])}
    if cfg.plot:
        plot(rows, lut, summary, cfg.plot)
        report["plot"] = str(cfg.plot)
    if cfg.out:
        atomic_write_json(cfg.out, {**report, "rows": [asdict(r) | {"error_pct": round(
            r.error_pct, 3)} for r in rows]})
        report["out"] = str(cfg.out)
    if cfg.record:
        lut.measurement.validations = [*(lut.measurement.validations or []),
                                       validation_record(report, started, load_before)]
        lut.save(cfg.lut)
        report["recorded_in"] = str(cfg.lut)
    return report, rows, lut


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    report, rows, lut = validate(settings_from(args))
    if args.json:
        print(json.dumps(report | {"rows": [asdict(r) | {"error_pct": round(r.error_pct, 3)}
                                            for r in rows]}, indent=1))
        return 0
    for r in rows:
        if not r.name.startswith("random_"):
            print(f"{r.name:<14} measured {r.measured_ms:8.3f} ms  LUT {r.predicted_ms:8.3f} ms "
                  f"({r.error_pct:+.1f}%)")
    p = report["plain_sum"]
    print(f"{lut.title} on {report['device']}: {report['networks']} networks")
    print(f"  LUT        MAPE {report['mape']:.2f}%  median |err| "
          f"{report['median_abs_error_pct']:.2f}%  max {report['max_abs_error_pct']:.1f}%  "
          f"within 10% {report['within_10pct']:.0%}  Kendall tau "
          f"{report.get('kendall_tau', float('nan')):.3f}  Spearman "
          f"{report.get('spearman', float('nan')):.3f}")
    print(f"  plain sum  MAPE {p['mape']:.2f}%  median |err| {p['median_abs_error_pct']:.2f}%  "
          f"within 10% {p['within_10pct']:.0%}  Kendall tau {p.get('kendall_tau', float('nan')):.3f}")
    if report["speed_ratio"]:
        b = report["at_build_speed"]
        print(f"  machine    {len(report['speed_blocks'])} of the LUT's blocks timed again read "
              f"x{report['speed_ratio']:.3f} of their entries; with that divided out: median "
              f"|err| {b['median_abs_error_pct']:.2f}%  within 10% {b['within_10pct']:.0%}")
    print(f"  noise: {report['noise']['statement']}")
    print(f"  targets (median |err| <= 5%, >= 90% within 10%, tau >= 0.9): "
          f"{'met' if report['meets_targets'] else 'NOT met'}"
          + (f"; plot {report['plot']}" if "plot" in report else "")
          + (f"; rows in {report['out']}" if "out" in report else ""))
    if "recorded_in" in report:
        print(f"recorded in {report['recorded_in']} (measurement.validations: "
              f"{len(lut.measurement.validations)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
