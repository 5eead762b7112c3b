"""Every command line as a process of its own, the way a user starts it (`python -m ...`): the
other tests call each command's main in-process (conftest.run_cli)."""

import json
import subprocess
import sys

from conftest import ROOT

COMMANDS = ["profiler.compare", "profiler.estimate", "profiler.lut", "profiler.reanchor",
            "profiler.run", "profiler.validate", "search.crossdevice", "search.export",
            "search.pair", "search.run", "search.space", "search.specialize", "search.train"]

# one interpreter runs each module as __main__ with --help: one torch import, not thirteen
HELP_ALL = """
import runpy, sys, json
codes = {}
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        codes[module] = "returned without exiting"
    except SystemExit as stop:
        codes[module] = stop.code
print(json.dumps(codes))
"""


def test_every_command_runs_as_a_module():
    done = subprocess.run([sys.executable, "-c", HELP_ALL, *COMMANDS], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.splitlines()[-1])
    assert codes == {module: 0 for module in COMMANDS}
    assert done.stdout.count("usage: ") == len(COMMANDS)
    assert "Examples" in done.stdout or "examples" in done.stdout


def test_a_user_error_is_one_line_and_status_2_in_a_real_process(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    done = subprocess.run([sys.executable, "-m", "search.space", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
