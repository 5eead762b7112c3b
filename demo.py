"""`make demo`: the whole pipeline on this machine's CPU, in 11-21 minutes on 2 cores.

  1. profile the host: every block of the 32x32 search space, exported to ExecuTorch/XNNPACK
     and timed in the real runtime -> a measured host LUT (the export cache makes re-runs fast)
  2. search (FBNet DNAS on Fashion-MNIST) on the host LUT and on the shipped Samsung S8 and
     iPhone X LUTs, all three at one matched trade-off: the paper's loss with latency in units
     of the space's mean price on each device's own LUT (--latency-weight), so one latency
     weight pushes equally hard on every device (--target-rel F searches at a matched budget
     instead)
  3. train the three found networks briefly, 4. export them to .pte (checked against PyTorch)
  5. measure them end to end on the host beside a few of the host LUT's own blocks
     (profiler.validate), and compare with what the host LUT predicted at the machine's speed
  6. the cross-device table (paper Table 5): is each device's network the faster one on its
     own device? The demo says so plainly either way; 7. the device comparison figures

The searches are short (a few hundred theta steps on a subset of Fashion-MNIST) to keep the demo
short; each search's summary says whether it converged. The full search is
`python -m search.run --lut luts/s8.json` (7-14 minutes on 2 cores: the most accurate network at
MobileNetV2's S8 price).

Each step is the project's own CLI run as a subprocess (the commands are printed, so any step
can be re-run alone); its full output goes to <out>/logs/. Re-running the demo resumes: finished
steps are reused.

Examples:
  python -m demo                       # everything into runs/demo/
  python -m demo --out runs/demo2 --search-epochs 6 --train-epochs 10
  python -m demo --fresh               # start over (deletes <out> first)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fbnet.arch import load_architecture
from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_text
from search.protocols.pairing import Network, pareto_holds
from search.runs import SearchRun, TrainRun

# (name, LUT, what it is): the host LUT is measured by step 1, the phone LUTs ship in luts/
SEARCH_TARGETS = (("host", None, "this machine, measured now"),
                  ("s8", "luts/s8_32.json", "Samsung Galaxy S8"),
                  ("iphone_x", "luts/iphone_x_32.json", "iPhone X"))
RESOLUTION = 32


@dataclass
class Step:
    name: str
    argv: list[str]  # after `python -m`
    stdout_to: Path | None = None  # keep the step's stdout as a file (JSON results)
    needs: list[str] = field(default_factory=list)  # steps that must have succeeded
    # a step that times programs runs alone: another step beside it would be its background load
    timing: bool = False
    status: str = "pending"  # running | ok | failed | skipped
    seconds: float = 0.0
    note: str = ""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="where everything goes (default runs/demo)")
    p.add_argument("--search-epochs", type=int, default=4,
                   help="DNAS epochs per search (default 4, the first weights-only)")
    p.add_argument("--search-images", type=int, default=3000,
                   help="Fashion-MNIST train images each search uses (default 3000)")
    p.add_argument("--latency-weight", type=float, default=2.0,
                   help="the matched trade-off: search.run --latency-weight, latency in units "
                        "of each device's mean price (default 2)")
    p.add_argument("--target-rel", type=float,
                   help="a matched budget instead: search.run --target-rel, a fraction of the "
                        "space's mean price on each device's LUT")
    p.add_argument("--train-epochs", type=int, default=1,
                   help="epochs per found network (default 1)")
    p.add_argument("--train-steps", type=int, default=150,
                   help="batches per training epoch (default 150 of 64 images)")
    p.add_argument("--jobs", type=int, default=2,
                   help="steps run side by side (default 2, one per core); steps that time "
                        "programs always run alone")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    return p.parse_args(argv)


def measured_path(out: Path) -> Path:
    """The found networks' host measurements: a profiler.validate --json report."""
    return out / "measured" / "host.json"


def plan(out: Path, args) -> list[Step]:
    host_lut = out / "luts" / f"host_{RESOLUTION}.json"
    steps = [Step("profile host", [
        "profiler.run", "--device", "host", "--resolution", str(RESOLUTION),
        "--out", str(host_lut), "--progress", "lines",  # a line per tenth of each phase
        *(["--resume"] if host_lut.exists() else [])], timing=True)]
    luts = {name: Path(lut) if lut else host_lut for name, lut, _ in SEARCH_TARGETS}
    for name, _, _ in SEARCH_TARGETS:
        run = out / "search" / name
        steps.append(Step(f"search {name}", [
            "search.run", "--lut", str(luts[name]), "--data", "fashion-mnist", "--out", str(run),
            "--epochs", str(args.search_epochs), "--warmup-epochs", "1",
            "--train-images", str(args.search_images), "--no-progress",
            *(["--target-rel", str(args.target_rel)] if args.target_rel is not None else
              ["--latency-weight", str(args.latency_weight)]),
            *(["--resume"] if SearchRun(run).checkpoint.exists() else [])],
            needs=["profile host"] if name == "host" else []))
    for name, _, _ in SEARCH_TARGETS:
        arch, train = SearchRun(out / "search" / name).arch, TrainRun(out / "train" / name)
        # a short proxy training (the small recipe), not the full one: the demo compares
        # latencies, and says so beside its accuracies
        steps.append(Step(f"train {name}", [
            "search.train", "--arch", str(arch), "--data", "fashion-mnist", "--out",
            str(train.root), "--recipe", "small", "--epochs", str(args.train_epochs),
            "--max-steps", str(args.train_steps), "--resume"], needs=[f"search {name}"]))
        steps.append(Step(f"export {name}", [
            "search.export", "--weights", str(train.checkpoint),
            "--out", str(out / "export" / f"{name}.pte")], needs=[f"train {name}"]))
    # the found networks timed end to end beside a few of the host LUT's own blocks, which say
    # how fast the machine runs now against the profiling (profiler.validate's speed ratio)
    searched = [str(SearchRun(out / "search" / n).arch) for n, _, _ in SEARCH_TARGETS]
    steps.append(Step("measure networks", [
        "profiler.validate", "--lut", str(host_lut), "--samples", "0", "--no-named",
        "--arch", *searched, "--json", "--quiet"], stdout_to=measured_path(out),
        needs=["profile host"] + [f"search {n}" for n, _, _ in SEARCH_TARGETS], timing=True))
    lut_paths = [str(luts[name]) for name, _, _ in SEARCH_TARGETS]
    archs = [str(out / "train" / name) for name, _, _ in SEARCH_TARGETS]
    table_args = ["search.crossdevice", "--lut", *lut_paths, "--arch", *archs, "fbnet_s8",
                  "fbnet_iphonex", "--measured", str(measured_path(out))]
    needs = ["profile host", "measure networks"] + [f"train {n}" for n, _, _ in SEARCH_TARGETS]
    steps.append(Step("cross-device table", [*table_args, "--plot",
                                             str(out / "crossdevice.png")], needs=needs))
    steps.append(Step("cross-device json", [*table_args, "--json"],
                      stdout_to=out / "crossdevice.json", needs=needs))
    steps.append(Step("compare devices", [
        "profiler.compare", "--lut", *lut_paths, "--out", str(out / "compare"),
        *[a for arch in searched for a in ("--arch", arch)]],
        needs=["profile host"] + [f"search {n}" for n, _, _ in SEARCH_TARGETS]))
    return steps


class Running:
    """One step's process; a thread copies its stdout to its log and, prefixed, to the screen."""

    def __init__(self, step: Step, index: int, logs: Path, lock: threading.Lock):
        self.step, self.lock = step, lock
        self.log_path = logs / f"{index:02d}_{step.name.replace(' ', '_')}.log"
        self.log = open(self.log_path, "w")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", *step.argv], stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._copy, daemon=True)
        self.reader.start()

    def _copy(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self.log.write(line)
            if not self.step.stdout_to:
                with self.lock:
                    print(f"    [{self.step.name}] {line}", end="", flush=True)

    def finish(self) -> None:
        """Record the finished process's outcome in its step, and say it."""
        code = self.proc.wait()
        self.reader.join()
        self.log.close()
        step = self.step
        step.seconds = time.perf_counter() - self.started
        if code == 0:
            if step.stdout_to:
                atomic_write_text(step.stdout_to, "".join(self.lines))
            step.status = "ok"
            print(f"    [{step.name}] done in {step.seconds:.0f} s", flush=True)
            return
        step.status = "failed"
        tail = [ln.strip() for ln in self.log_path.read_text().splitlines() if ln.strip()]
        errors = [ln for ln in tail if ln.startswith("error:")]
        step.note = (errors or tail or [f"exit code {code}"])[-1][:300]
        print(f"    [{step.name}] FAILED after {step.seconds:.0f} s (exit {code}): {step.note}\n"
              f"    full output: {self.log_path}", flush=True)


def run_steps(steps: list[Step], logs: Path, jobs: int) -> None:
    """Run the steps in plan order, up to `jobs` at a time once their needs have succeeded; a
    timing step runs alone. A step whose needs failed is skipped."""
    by_name = {s.name: s for s in steps}
    index = {s.name: i for i, s in enumerate(steps, 1)}
    lock = threading.Lock()
    running: list[Running] = []
    while any(s.status in ("pending", "running") for s in steps):
        for step in steps:
            if step.status != "pending":
                continue
            needs = [by_name[n] for n in step.needs]
            if any(n.status in ("failed", "skipped") for n in needs):
                step.status = "skipped"
                step.note = "needs " + ", ".join(n.name for n in needs if n.status != "ok")
                with lock:
                    print(f"\n[{index[step.name]}/{len(steps)}] {step.name}: skipped "
                          f"({step.note})", flush=True)
                continue
            if any(n.status != "ok" for n in needs):
                continue
            alone = step.timing or any(r.step.timing for r in running)
            if len(running) >= jobs or (alone and running):
                if step.timing:
                    break  # a ready timing step waits for the machine to empty; none overtakes it
                continue
            shown = "python -m " + " ".join(step.argv) + (
                f" > {step.stdout_to}" if step.stdout_to else "")
            with lock:
                print(f"\n[{index[step.name]}/{len(steps)}] {step.name}: {shown}", flush=True)
            step.status = "running"
            running.append(Running(step, index[step.name], logs, lock))
        time.sleep(0.2)
        for r in [r for r in running if r.proc.poll() is not None]:
            with lock:
                r.finish()
            running.remove(r)


def summary(steps: list[Step], out: Path, wall: float) -> None:
    print(f"\n== demo finished in {wall / 60:.1f} min ==")
    for s in steps:
        print(f"  {s.status:<8} {s.seconds:6.0f} s  {s.name}" + (f"  ({s.note})" if s.note else ""))
    where = [
        (out / "luts", "measured host LUT (python -m profiler.lut show <file>)"),
        (out / "search", "searches: arch.json, samples.json, probs.png, curves.png per device"),
        (out / "train", "trained networks: checkpoint.pt, result.json (top-1), log.jsonl"),
        (out / "export", "deployable .pte programs and their check reports (.pte.json)"),
        (out / "measured", "end-to-end host latency of the found networks (profiler.validate)"),
        (out / "crossdevice.json", "cross-device table (also crossdevice.png)"),
        (out / "compare", "device comparison figures: report.html / report.md"),
        (out / "logs", "every step's full output"),
    ]
    print("\nwhere everything is:")
    for path, what in where:
        if path.exists():
            print(f"  {str(path):<28} {what}")


def measured_vs_predicted(out: Path) -> None:
    """One line per found network: host LUT prediction next to the host measurement, and how
    fast the machine ran then against the profiling (the LUT's own blocks timed beside them)."""
    path = measured_path(out)
    if not path.exists():
        return
    report = json.loads(path.read_text())
    ratio = report.get("speed_ratio")
    moved = ratio is not None and report["noise"].get("machine_moved")
    print("\nhost LUT prediction vs measurement of the found networks:")
    for row in report["rows"]:
        line = (f"  {row['name']:<18} predicted {row['predicted_ms']:.3f} ms, measured "
                f"{row['measured_ms']:.3f} ms ({row['error_pct']:+.1f}%)")
        if moved:
            at_build = row["predicted_ms"] / (row["measured_ms"] / ratio) - 1
            line += f"; at the profiling's speed {at_build:+.1%}"
        print(line)
    if ratio is not None:
        print(f"  the host LUT's own blocks, timed beside them, read x{ratio:.3f} of their "
              "entries: " + ("the machine runs at another speed than when it was profiled "
                             "(load, heat)" if moved else "the machine runs as it did when "
                             "profiled"))


def device_specific_verdict(out: Path) -> None:
    """The product's claim, checked on this run: on each phone's LUT, is the network searched
    for that phone faster than the one searched for the other phone (matched trade-off)?"""
    path = out / "crossdevice.json"
    if not path.exists():
        return
    table = json.loads(path.read_text())
    columns = {c["device"]: c["label"] for c in table["columns"]}
    rows = {Path(row["source"]).name: row for row in table["rows"]}  # train/<device>
    pairs = [(dev, other) for dev, other in (("s8", "iphone_x"), ("iphone_x", "s8"))
             if dev in columns and dev in rows and other in rows]
    if not pairs:
        return
    print("\ndevice-specific networks at a matched trade-off (top-1 from one short training "
          "each; benchmarks/device_pairs.py checks this over seeds):")
    # the claim is search.pair's own check (search.protocols.pairing.pareto_holds), on one
    # training per network: at least as accurate at no higher latency on the device
    networks = {}
    for name in {d for pair in pairs for d in pair}:
        row = rows[name]
        networks[name] = Network(
            name, "dnas", name, 0,
            load_architecture(row["arch_string"], resolution=row["resolution"]),
            latency_ms={dev: row["cells"][label]["latency_ms"] for dev, label in columns.items()},
            top1=[row["top1"]["value"]] if row.get("top1") else [])
    for dev, other in pairs:
        own, theirs = networks[dev], networks[other]
        own_ms, their_ms = own.latency_ms[dev], theirs.latency_ms[dev]
        acc = ""
        if own.top1 and theirs.top1:
            acc = f"; top-1 {100 * own.top1_mean:.1f}% vs {100 * theirs.top1_mean:.1f}%"
            check = pareto_holds(own, theirs, dev)
            holds, gap = check["holds"], 100 * check["top1_gap"]
        else:  # no accuracy to match: latency alone
            holds, gap = own_ms <= their_ms, 0.0
        if own_ms > their_ms:
            verdict = "NOT faster on its own device in this run"
        elif holds:
            verdict = "faster on its own device and at least as accurate: holds"
        else:
            verdict = (f"faster on its own device but {-gap:.1f} points less accurate: another "
                       "point of the trade-off, not a win at matched accuracy")
        print(f"  on {dev}: the {dev} network {own_ms:.3f} ms, the {other} network "
              f"{their_ms:.3f} ms ({their_ms / own_ms - 1:+.1%}){acc}: {verdict}")


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if min(args.search_epochs, args.train_epochs, args.search_images, args.train_steps,
           args.jobs) < 1:
        raise UserError("--search-epochs, --search-images, --train-epochs, --train-steps and "
                        "--jobs must be >= 1")
    if args.target_rel is not None and not args.target_rel > 0:
        raise UserError(f"--target-rel must be positive, got {args.target_rel}")
    if not args.latency_weight > 0:
        raise UserError(f"--latency-weight must be positive, got {args.latency_weight}")
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    steps = plan(out, args)
    started = time.perf_counter()
    print(f"fbnet-hw demo: profile this CPU, search for it and for two phones, train, export, "
          f"measure; everything goes to {out}/")
    run_steps(steps, logs, args.jobs)
    measured_vs_predicted(out)
    device_specific_verdict(out)
    summary(steps, out, time.perf_counter() - started)
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
