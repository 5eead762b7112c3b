import importlib
import io
import os
import random
import shutil
import subprocess
import sys
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_cli(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m module args` in this process: its exit status and what it printed, as a
    completed process. A new Python process spends about 3 s of CPU importing torch, and the
    suite runs over a hundred command lines; what a command may change process-wide (torch's
    threads and random state, NumPy's and Python's, the working folder, the environment, the
    warning filters) is put back after it. tests/test_cli_process.py runs them as processes."""
    command = importlib.import_module(module)
    out, err = io.StringIO(), io.StringIO()
    saved = (os.getcwd(), sys.argv, dict(os.environ), torch.get_num_threads(),
             torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        os.chdir(cwd)
        sys.argv = [command.__file__, *args]  # argparse's prog, as under `python -m`
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            try:
                code = command.main(list(args))
            except SystemExit as stop:  # argparse's usage errors and --help
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            except Exception:  # what a process would die of: its traceback, status 1
                traceback.print_exc()
                code = 1
    finally:
        cwd_before, sys.argv, environ, threads, torch_rng, np_rng, py_rng = saved
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
        torch.set_rng_state(torch_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], code or 0,
                                       out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def host_runner(tmp_path_factory) -> Path:
    """The host-built native runner (android_app/build_host.sh), copied so a rebuild cannot
    race the tests."""
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "android_app" / "build_host.sh")],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    copy = tmp_path_factory.mktemp("runner") / "fbnet_bench"
    shutil.copy2(proc.stdout.strip().splitlines()[-1], copy)
    return copy
