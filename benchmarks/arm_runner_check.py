"""The ARM runner, really executed: fbnet_bench built for aarch64 (android_app/
build_linux_aarch64.sh, against the aarch64 executorch wheel) runs under qemu-user with
QEMU_CPU=cortex-a76, so XNNPACK takes the code paths of a phone's CPU (NEON, dot product,
fp16 arithmetic), not the emulator host's. Every program's output is checked against PyTorch
on the same input (the protocol's fill pattern), and the ETDump's operators are listed.

Programs: blocks of the 32x32 space (stem, expansion blocks with 3x3 and 5x5 depthwise, a
grouped block, a strided skip, the classifier) and the whole FBNet-B network at 32x32.

Timings under qemu are meaningless (an emulator translating ARM to x86) and are printed only
as such. Needs `qemu-user` and `g++-aarch64-linux-gnu` (Debian); the opt-in test is
tests/test_arm_runner.py (FBNET_ARM_TESTS=1).

Examples:
  python benchmarks/arm_runner_check.py
  python benchmarks/arm_runner_check.py --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fbnet.arch import named_architecture  # noqa: E402
from fbnet.errors import UserError, cli_entry  # noqa: E402
from fbnet.lowering import prepare  # noqa: E402
from fbnet.space import SpaceConfig  # noqa: E402
from fbnet.workloads import candidate_workload, fixed_parts  # noqa: E402
from profiler.export import DEFAULT_CACHE, ArtifactCache, ExportJob, export_all  # noqa: E402
from profiler.jobs import arch_job  # noqa: E402
from profiler.measure import parse_etdump  # noqa: E402
from profiler.protocol import fill_pattern  # noqa: E402
from profiler.settings import Settings  # noqa: E402

BUILD_SCRIPT = ROOT / "android_app" / "build_linux_aarch64.sh"
SYSROOT = Path("/usr/aarch64-linux-gnu")  # Debian's arm64 libc, for qemu's loader
QEMU_CPU = "cortex-a76"
RELATIVE_TOLERANCE = 1e-4  # of the output's largest magnitude: fp32 summation order and FMA
BLOCKS = ("k3_e6", "k5_e3", "k3_e1_g2", "k5_e6", "skip")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/arm_runner_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", type=Path, help="an aarch64 fbnet_bench (default: build it)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="artifact cache folder")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    return p.parse_args(argv)


def build_runner() -> Path:
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        errors = [l for l in proc.stderr.splitlines() if l.strip()]
        raise UserError(f"building the aarch64 runner failed: {errors[-1] if errors else '?'}")
    return Path(lines[-1])


def export_jobs() -> list[ExportJob]:
    """The stem, blocks spread over the stages of the 32x32 space, the classifier, FBNet-B."""
    space = SpaceConfig.create(32)
    layers = space.layers()
    step = (len(layers) - 1) / (len(BLOCKS) - 1)
    blocks = [candidate_workload(layers[round(i * step)], name) for i, name in enumerate(BLOCKS)]
    parts = fixed_parts(space)
    jobs = [ExportJob(w.key, tuple(w.input_shape))
            for w in [parts.stem, *blocks, parts.classifier]]
    return jobs + [arch_job(named_architecture("fbnet_b", resolution=32), Settings())]


def run_under_qemu(runner: Path, programs: list, workdir: Path) -> tuple[dict, float]:
    """One manifest with every program: 1 warm-up, 2 timed runs, ETDump, outputs saved."""
    manifest = {"schema": "fbnet-bench-manifest/1", "warmup": 1, "iters": 2, "rounds": 1,
                "threads": 1, "etdump": True, "etdump_iters": 1, "save_outputs": True,
                "programs": [{"id": job.key, "path": str(art.program.resolve()),
                              "inputs": [{"shape": list(job.input_shape)}]}
                             for job, art in programs]}
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    env = dict(os.environ, QEMU_LD_PREFIX=str(SYSROOT), QEMU_CPU=QEMU_CPU)
    start = time.monotonic()
    proc = subprocess.run(["qemu-aarch64", str(runner), "--manifest", "manifest.json",
                           "--output", "result.json"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=1800)
    wall_s = time.monotonic() - start
    if proc.returncode not in (0, 1) or not (workdir / "result.json").is_file():
        tail = [l for l in proc.stderr.splitlines() if l.strip()][-1:]
        raise UserError(f"the aarch64 runner failed under qemu (exit {proc.returncode}): {tail}")
    return json.loads((workdir / "result.json").read_text()), wall_s


def reference_output(job: ExportJob) -> np.ndarray:
    module = prepare(job.build_module(), job.recipe)  # the exported module (fp32 recipes)
    x = torch.from_numpy(fill_pattern(math.prod(job.input_shape)).reshape(job.input_shape))
    with torch.no_grad():
        return module(x).numpy()


def check(runner: Path, cache: Path) -> dict:
    if shutil.which("qemu-aarch64") is None:
        raise UserError("no qemu-aarch64: apt-get install qemu-user")
    if not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists():
        raise UserError(f"no arm64 libc in {SYSROOT}: apt-get install g++-aarch64-linux-gnu")
    jobs = export_jobs()
    found, _ = export_all(jobs, ArtifactCache(cache), workers=1)
    programs = [(job, found[job.key]) for job in jobs]
    with tempfile.TemporaryDirectory(prefix="arm-runner-") as tmp:
        workdir = Path(tmp)
        result, wall_s = run_under_qemu(runner, programs, workdir)
        rows = []
        for (job, art), prog in zip(programs, result["programs"]):
            row = {"id": job.key if not job.arch else "fbnet_b@32", "status": prog["status"],
                   "error": prog["error"]}
            if prog["status"] == "ok":
                want = reference_output(job)
                got = np.fromfile(workdir / prog["outputs"][0], dtype=np.float32)
                err = float(np.max(np.abs(got.reshape(want.shape) - want)))
                scale = float(np.max(np.abs(want))) or 1.0
                etdump = parse_etdump(workdir / prog["etdump"], art.etrecord, warmup=1)
                row.update(max_abs_err=err, rel_err=err / scale,
                           agrees=err / scale <= RELATIVE_TOLERANCE,
                           etdump_ops=sorted({re.sub(r" #\d+$", "", op.name)
                                              for op in etdump.ops}),
                           qemu_median_ms_meaningless=float(np.median(prog["latencies_ms"])))
            rows.append(row)
    return {"runner": str(runner), "runtime_version": result["runner"]["runtime_version"],
            "qemu_cpu": QEMU_CPU, "device_os": result["device"].get("os"),
            "tolerance_rel": RELATIVE_TOLERANCE, "wall_s_under_qemu": round(wall_s, 1),
            "programs": rows, "all_agree": all(r.get("agrees") for r in rows)}


def print_summary(summary: dict) -> None:
    print(f"aarch64 fbnet_bench (ExecuTorch {summary['runtime_version']}) under qemu-aarch64, "
          f"QEMU_CPU={summary['qemu_cpu']}: {len(summary['programs'])} programs in "
          f"{summary['wall_s_under_qemu']} s")
    for row in summary["programs"]:
        if row["status"] != "ok":
            print(f"  {row['id']}: FAILED {row['error']}")
            continue
        print(f"  {row['id']}: max |ARM - PyTorch| {row['max_abs_err']:.2e} "
              f"({row['rel_err']:.1e} of the largest output; "
              f"{'agrees' if row['agrees'] else 'DISAGREES'})")
        print(f"    ETDump operators: {', '.join(row['etdump_ops']) or '(none)'}")
    print("timings under qemu are meaningless (an emulator) and are not reported here")
    print(f"all outputs within {summary['tolerance_rel']:.0e} of PyTorch: "
          f"{'yes' if summary['all_agree'] else 'NO'}")


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    runner = args.runner or build_runner()
    summary = check(runner, args.cache)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print_summary(summary)
    return 0 if summary["all_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
