"""A stand-in iPhone for the iOS backend's tests: the app played on this host."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

from fbnet.errors import UserError
from fbnet.io import atomic_write_json
from profiler.backends.base import TransportError
from profiler.backends.ios import DONE, LOG, MANIFEST, RESULT, IosDevice, IosTransport


class LocalAppTransport(IosTransport):
    """Plays the iPhone on this host: Documents is a local folder and "launching the app" runs
    the host-built native runner on Documents/manifest.json, then writes the `done` marker
    exactly as ios_app's BenchJob.swift does."""

    def __init__(self, documents: Path, runner: Path, product_type: str = "iPhone10,3",
                 installed: bool = True):
        self.documents = Path(documents)
        self.documents.mkdir(parents=True, exist_ok=True)
        self.runner = Path(runner)
        self.product_type = product_type
        self._installed = installed
        self._worker: threading.Thread | None = None
        self.launches = 0

    def _path(self, remote: str) -> Path:
        return self.documents / remote

    def connect(self, udid, models, profile_name) -> IosDevice:
        return IosDevice(udid=udid or "local", product_type=self.product_type,
                         ios_version="local", name="host stand-in")

    def app_installed(self) -> bool:
        return self._installed

    def install_app(self, app: Path) -> None:
        if not Path(app).exists():
            raise UserError(f"app {app} does not exist")
        self._installed = True

    def push(self, local: Path, remote: str) -> None:
        dest = self._path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)

    def pull(self, remote: str, local: Path) -> None:
        src = self._path(remote)
        if not src.is_file():
            raise TransportError(f"Documents/{remote} does not exist on the device")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, local)

    def exists(self, remote: str) -> bool:
        return self._path(remote).exists()

    def remove(self, remote: str) -> None:
        path = self._path(remote)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def read_text(self, remote: str) -> str | None:
        path = self._path(remote)
        return path.read_text() if path.is_file() else None

    def launch(self, environment: dict[str, str]) -> None:
        self._path(DONE).unlink(missing_ok=True)
        self.launches += 1
        job_id = environment.get("FBNET_JOB_ID", "")

        def app() -> None:  # BenchJob.swift, in Python
            with open(self._path(LOG), "w") as log:
                proc = subprocess.run([str(self.runner), "--manifest", str(self._path(MANIFEST)),
                                       "--output", str(self._path(RESULT))],
                                      stdout=subprocess.DEVNULL, stderr=log, text=True)
            error = None
            if proc.returncode == 2:
                lines = self._path(LOG).read_text().strip().splitlines()
                error = lines[-1] if lines else "bad manifest"
            atomic_write_json(self._path(DONE), {
                "exit_code": proc.returncode, "error": error, "job_id": job_id,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

        self._worker = threading.Thread(target=app, daemon=True)
        self._worker.start()

    def app_running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()
