"""Opt-in (FBNET_ARM_TESTS=1, minutes): the runner built for aarch64 against the aarch64
executorch wheel runs under qemu-user as a cortex-a76, and its outputs agree with PyTorch on
blocks and on FBNet-B (benchmarks/arm_runner_check.py). Needs the Debian packages qemu-user and
g++-aarch64-linux-gnu, and PyPI once for the wheel."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FBNET_ARM_TESTS") != "1",
                       reason="opt-in: FBNET_ARM_TESTS=1 builds the aarch64 runner and runs it "
                              "under qemu (minutes)"),
    pytest.mark.skipif(not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-g++")),
                       reason="needs qemu-aarch64 and aarch64-linux-gnu-g++ (Debian packages "
                              "qemu-user and g++-aarch64-linux-gnu)"),
]


def test_arm_runner_agrees_with_pytorch():
    proc = subprocess.run([sys.executable, "benchmarks/arm_runner_check.py", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["runtime_version"] == "1.5.1" and summary["qemu_cpu"] == "cortex-a76"
    rows = summary["programs"]
    assert len(rows) >= 8 and any(r["id"] == "fbnet_b@32" for r in rows)
    for row in rows:
        assert row["status"] == "ok", row
        assert row["agrees"], row
        assert row["etdump_ops"], row  # the delegate's operators, profiled on the ARM build
