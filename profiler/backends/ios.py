"""iOS backend: measure on an iPhone through the benchmark app (ios_app/) and pymobiledevice3.

An iPhone has no shell to run a benchmark binary in, so the measuring code ships inside an app
(ios_app/, the same C++ core as the Android runner) and a job goes through the app's Documents
folder:

    host                                          iPhone (app org.fbnethw.FbnetBench)
    push programs/<sha>.pte, manifest.json  --->  Documents/   (house_arrest, VendDocuments)
    launch app, env FBNET_JOB_ID=<id>       --->  runs the manifest (DVT process control)
    poll Documents/done                     <---  result.json, etdump/<i>.etdp, bench.log, done
    pull, parse, delete the job files

The phone side sits behind `IosTransport` (files in Documents + launching the app):
`Pmd3Transport` talks to a real iPhone with pymobiledevice3 (the optional extra `ios`); the
tests play the app on the host (tests/ios_fakes.py).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fnmatch
import json
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.version import Version

from fbnet.errors import UserError
from fbnet.lut import DeviceInfo, RuntimeInfo
from profiler.backends.base import Backend, BackendOptions, Program, Transport, TransportError, \
    sha256_file
from profiler.protocol import BenchResult, Manifest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE_ID = "org.fbnethw.FbnetBench"  # ios_app/project.yml PRODUCT_BUNDLE_IDENTIFIER
INSTALL_HINT = "pip install -e '.[ios]'"

# The contract with ios_app/FbnetBench/App/BenchJob.swift (paths relative to Documents).
MANIFEST = "manifest.json"
RESULT = "result.json"
DONE = "done"
LOG = "bench.log"
ETDUMP_DIR = "etdump"
PROGRAMS_DIR = "programs"
JOB_FILES = (MANIFEST, RESULT, DONE, LOG)

# SoC by iPhone ProductType generation ("iPhone10,3" -> 10), for the LUT's device record.
IPHONE_SOCS = {10: "Apple A11 Bionic", 11: "Apple A12 Bionic", 12: "Apple A13 Bionic",
               13: "Apple A14 Bionic", 14: "Apple A15 Bionic", 15: "Apple A16 Bionic",
               16: "Apple A17 Pro", 17: "Apple A18"}


def iphone_soc(product_type: str | None) -> str | None:
    if not product_type or not product_type.startswith("iPhone"):
        return None
    major = product_type[len("iPhone"):].split(",")[0]
    return IPHONE_SOCS.get(int(major)) if major.isdigit() else None


@dataclass
class IosDevice:
    udid: str
    product_type: str  # e.g. iPhone10,3
    ios_version: str  # e.g. 16.7.10
    name: str | None = None  # the user's device name
    build: str | None = None


@dataclass
class DoneMarker:
    """Documents/done, written by the app after the result: how the job ended."""

    exit_code: int
    error: str | None
    job_id: str
    finished: str | None = None

    @classmethod
    def parse(cls, text: str) -> "DoneMarker":
        try:
            data = json.loads(text)
            return cls(int(data["exit_code"]), data.get("error"), str(data.get("job_id", "")),
                       data.get("finished"))
        except (ValueError, KeyError, TypeError):
            raise TransportError(f"the app wrote a malformed '{DONE}' marker ({text[:80]!r}); "
                                 "rebuild and reinstall it from ios_app/") from None


# --- transports -------------------------------------------------------------------------------
class IosTransport(Transport):
    """The app's Documents folder (remote paths are relative to it) and launching the app."""

    @abc.abstractmethod
    def connect(self, udid: str | None, models: tuple[str, ...], profile_name: str) -> IosDevice:
        """Find the iPhone, check every prerequisite, return what it is."""

    @abc.abstractmethod
    def app_installed(self) -> bool: ...

    @abc.abstractmethod
    def install_app(self, app: Path) -> None: ...

    @abc.abstractmethod
    def remove(self, remote: str) -> None:
        """Delete a file or folder (recursively); missing is fine."""

    @abc.abstractmethod
    def read_text(self, remote: str) -> str | None:
        """A small file's text, or None when it does not exist."""

    @abc.abstractmethod
    def launch(self, environment: dict[str, str]) -> None:
        """Start the app (killing a running instance)."""

    @abc.abstractmethod
    def app_running(self) -> bool: ...

    def close(self) -> None:
        """Release connections."""

    def shell(self, cmd: str, timeout_s: float = 600.0) -> tuple[int, str]:
        raise TransportError("an iPhone has no shell; the iOS backend works through the app's "
                             "Documents folder")

    def checksum(self, remote: str) -> str | None:
        return None  # programs are stored under their sha256, so existence is enough


class Pmd3Transport(IosTransport):
    """A real iPhone over USB through pymobiledevice3 (its API is async: one private event loop
    runs every call, each bounded by a timeout so a wedged phone never hangs the profiler).
    pymobiledevice3 is the optional extra `ios`: it is imported where a phone is reached, so
    the backend and its tests load without it."""

    def __init__(self, bundle_id: str):
        try:
            import pymobiledevice3  # noqa: F401
        except ImportError:
            raise UserError(f"measuring on an iPhone needs pymobiledevice3, which is not "
                            f"installed: {INSTALL_HINT}") from None
        self.bundle_id = bundle_id
        self._loop = asyncio.new_event_loop()
        self._stack = contextlib.AsyncExitStack()
        self.lockdown = None
        self.device: IosDevice | None = None
        self._afc = None
        self._process_control = None

    # -- plumbing --------------------------------------------------------------------------
    def _run(self, coro, what: str, timeout_s: float = 60.0):
        from pymobiledevice3.exceptions import PyMobileDevice3Exception

        try:
            return self._loop.run_until_complete(asyncio.wait_for(coro, timeout_s))
        except asyncio.TimeoutError:
            raise TransportError(f"{what}: no answer from the iPhone within {timeout_s:.0f} s; "
                                 "unlock it, re-plug the cable and re-run") from None
        except (PyMobileDevice3Exception, OSError) as err:
            raise TransportError(f"{what}: {explain_pmd3_error(err)}") from None

    @staticmethod
    def _doc(remote: str) -> str:
        return "/Documents/" + remote.lstrip("/")

    # -- finding the phone and checking prerequisites -----------------------------------------
    def connect(self, udid, models, profile_name) -> IosDevice:
        self.device = self._run(self._connect(udid, models, profile_name), "connecting to the "
                                "iPhone", timeout_s=120)
        return self.device

    async def _connect(self, udid, models, profile_name) -> IosDevice:
        from pymobiledevice3 import usbmux
        from pymobiledevice3.exceptions import ConnectionFailedToUsbmuxdError
        from pymobiledevice3.lockdown import create_using_usbmux

        try:
            devices = [d for d in await usbmux.list_devices() if d.is_usb]
        except ConnectionFailedToUsbmuxdError:
            raise UserError("usbmuxd is not running, so no iPhone can be reached: on Linux "
                            "`sudo apt install usbmuxd` (or `sudo systemctl start usbmuxd`), then "
                            "re-plug the phone; on macOS it is built in") from None
        if udid:
            devices = [d for d in devices if d.matches_udid(udid)]
            if not devices:
                raise UserError(f"no iPhone with UDID {udid} on USB (`pymobiledevice3 usbmux "
                                "list` shows what is attached); connect it with a cable")
        if not devices:
            raise UserError(f"no iPhone found on USB for --device {profile_name}: connect it with "
                            "a cable, unlock it and tap 'Trust' (check with `pymobiledevice3 "
                            "usbmux list`)")
        candidates = []
        for mux in devices:
            lockdown = await create_using_usbmux(serial=mux.serial, autopair=True,
                                                 pair_timeout=60)
            product = lockdown.product_type or ""
            if models and not any(fnmatch.fnmatch(product, p) for p in models):
                await lockdown.close()
                candidates.append((mux.serial, product, None))
                continue
            candidates.append((mux.serial, product, lockdown))
        matching = [c for c in candidates if c[2] is not None]
        if not matching:
            found = ", ".join(f"{s} ({p})" for s, p, _ in candidates)
            raise UserError(f"--device {profile_name} expects ProductType {' or '.join(models)} "
                            f"but found {found}; use --device ios:UDID to measure that phone")
        if len(matching) > 1:
            for _, _, lockdown in matching:
                await lockdown.close()
            found = ", ".join(s for s, _, _ in matching)
            raise UserError(f"several iPhones match --device {profile_name} ({found}); pick one "
                            "with --device ios:UDID")
        serial, product, lockdown = matching[0]
        self.lockdown = lockdown
        self._stack.push_async_callback(lockdown.close)
        version = lockdown.product_version
        device = IosDevice(udid=lockdown.udid or serial, product_type=product,
                           ios_version=version, name=lockdown.all_values.get("DeviceName"),
                           build=lockdown.product_build_version)

        if lockdown.has_developer_mode and not await lockdown.get_developer_mode_status():
            raise UserError("Developer Mode is off on the iPhone: run `pymobiledevice3 amfi "
                            "reveal-developer-mode`, then Settings > Privacy & Security > "
                            "Developer Mode > On (the phone restarts), and re-run")
        await self._check_disk_image(lockdown, Version(version))
        self._dvt_provider_source = await self._dvt_service_provider(lockdown, Version(version))
        return device

    async def _check_disk_image(self, lockdown, version) -> None:
        from pymobiledevice3.services.mobile_image_mounter import MobileImageMounterService

        image_type = "Personalized" if version >= Version("17.0") else "Developer"
        async with MobileImageMounterService(lockdown) as mounter:
            mounted = await mounter.is_image_mounted(image_type)
        if not mounted:
            raise UserError("the developer disk image is not mounted on the iPhone (needed to "
                            "launch the app): run `pymobiledevice3 mounter auto-mount` and re-run")

    async def _dvt_service_provider(self, lockdown, version):
        """What DVT (app launching) runs over: lockdown before iOS 17, an RSD tunnel after."""
        if version < Version("17.0"):
            return lockdown
        from pymobiledevice3.exceptions import TunneldConnectionError
        from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid

        try:
            rsd = await get_tunneld_device_by_udid(lockdown.udid)
        except TunneldConnectionError:
            rsd = None
        if rsd is not None:
            self._stack.push_async_callback(rsd.close)
            return rsd
        if version < Version("17.4"):
            raise UserError(f"iOS {version} (17.0-17.3) reaches developer services only through "
                            "a tunnel: run `sudo pymobiledevice3 remote tunneld` in another "
                            "terminal and re-run")
        # iOS 17.4+: an in-process userspace tunnel, no root needed.
        from pymobiledevice3.remote.userspace_tunnel import UserspaceRsdTunnel

        return await self._stack.enter_async_context(UserspaceRsdTunnel(serial=lockdown.udid))

    # -- the app -----------------------------------------------------------------------------
    def app_installed(self) -> bool:
        from pymobiledevice3.services.installation_proxy import InstallationProxyService

        async def lookup():
            async with InstallationProxyService(self.lockdown) as proxy:
                return await proxy.get_apps(bundle_identifiers=[self.bundle_id])

        return self.bundle_id in self._run(lookup(), "looking up the benchmark app")

    def install_app(self, app: Path) -> None:
        from pymobiledevice3.services.installation_proxy import InstallationProxyService

        async def install():
            async with InstallationProxyService(self.lockdown) as proxy:
                await proxy.install_from_local(str(app), developer=True)

        self._run(install(), f"installing {app}", timeout_s=600)

    async def _documents(self):
        if self._afc is None:
            from pymobiledevice3.exceptions import AppNotInstalledError
            from pymobiledevice3.services.house_arrest import HouseArrestService

            try:
                afc = await HouseArrestService.create(self.lockdown, self.bundle_id,
                                                      documents_only=True)
            except AppNotInstalledError:
                raise UserError(f"the benchmark app {self.bundle_id} is not installed; see "
                                "ios_app/README.md") from None
            self._afc = await self._stack.enter_async_context(afc)
        return self._afc

    def push(self, local: Path, remote: str) -> None:
        async def push():
            afc = await self._documents()
            parent = self._doc(remote).rsplit("/", 1)[0]
            await afc.makedirs(parent)
            await afc.set_file_contents(self._doc(remote), Path(local).read_bytes())

        self._run(push(), f"copying {Path(local).name} to the iPhone", timeout_s=300)

    def pull(self, remote: str, local: Path) -> None:
        async def pull():
            afc = await self._documents()
            return await afc.get_file_contents(self._doc(remote))

        data = self._run(pull(), f"copying Documents/{remote} from the iPhone", timeout_s=300)
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        Path(local).write_bytes(data)

    def exists(self, remote: str) -> bool:
        async def exists():
            return await (await self._documents()).exists(self._doc(remote))

        return bool(self._run(exists(), f"looking for Documents/{remote}"))

    def remove(self, remote: str) -> None:
        async def remove():
            afc = await self._documents()
            if await afc.exists(self._doc(remote)):
                await afc.rm(self._doc(remote), force=True)

        self._run(remove(), f"deleting Documents/{remote}")

    def read_text(self, remote: str) -> str | None:
        async def read():
            afc = await self._documents()
            if not await afc.exists(self._doc(remote)):
                return None
            return (await afc.get_file_contents(self._doc(remote))).decode("utf-8", "replace")

        return self._run(read(), f"reading Documents/{remote}")

    async def _process_control_service(self):
        if self._process_control is None:
            from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
            from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

            dvt = await self._stack.enter_async_context(DvtProvider(self._dvt_provider_source))
            self._process_control = await self._stack.enter_async_context(ProcessControl(dvt))
        return self._process_control

    def launch(self, environment: dict[str, str]) -> None:
        async def launch():
            control = await self._process_control_service()
            return await control.launch(self.bundle_id, environment=environment,
                                        kill_existing=True)

        self._run(launch(), "launching the benchmark app (keep the iPhone unlocked)")

    def app_running(self) -> bool:
        async def pid():
            control = await self._process_control_service()
            return await control.process_identifier_for_bundle_identifier(self.bundle_id)

        return bool(self._run(pid(), "checking the benchmark app"))

    def close(self) -> None:
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._stack.aclose(), 30))
        except Exception:  # noqa: BLE001 - the phone may be gone; nothing left to save
            pass
        finally:
            self._loop.close()


def explain_pmd3_error(err: Exception) -> str:
    """One line saying what a pymobiledevice3 failure means and what to do about it."""
    name = type(err).__name__
    fixes = {
        "PasswordRequiredError": "the iPhone is locked: unlock it and re-run",
        "PairingDialogResponsePendingError": "tap 'Trust' on the iPhone, then re-run",
        "UserDeniedPairingError": "the iPhone refused to trust this computer: unplug, re-plug, "
                                  "tap 'Trust'",
        "NotPairedError": "this computer is not paired: unlock the iPhone, tap 'Trust' "
                          "(`pymobiledevice3 lockdown pair`)",
        "NotTrustedError": "the iPhone does not trust this computer: unlock it and tap 'Trust'",
        "InvalidHostIDError": "the pairing is stale: `pymobiledevice3 lockdown unpair`, then "
                              "re-plug and tap 'Trust'",
        "DeveloperModeIsNotEnabledError": "Developer Mode is off: `pymobiledevice3 amfi "
                                          "reveal-developer-mode`, then enable it in Settings",
        "NotMountedError": "the developer disk image is not mounted: `pymobiledevice3 mounter "
                           "auto-mount`",
        "AppNotInstalledError": "the benchmark app is not installed (ios_app/README.md)",
        "ConnectionFailedToUsbmuxdError": "usbmuxd is not running (Linux: `sudo systemctl start "
                                          "usbmuxd`)",
        "DeviceNotFoundError": "the iPhone went away: re-plug it and re-run",
        "NoDeviceConnectedError": "no iPhone on USB: connect it and re-run",
        "ConnectionTerminatedError": "the connection dropped: re-plug the iPhone and re-run",
    }
    detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
    fix = fixes.get(name, "re-plug and unlock the iPhone and re-run; `pymobiledevice3 usbmux "
                          "list` should show it")
    return f"{name}{': ' + detail[:160] if detail else ''} ({fix})"


# --- the backend ------------------------------------------------------------------------------
def job_timeout_s(manifest: Manifest) -> float:
    """A generous bound for one job: the app's launch, then up to 5 s per program per round."""
    passes = manifest.rounds + (1 if manifest.etdump else 0)
    return 180.0 + 5.0 * len(manifest.programs) * passes + manifest.cooldown_s * manifest.rounds


class IosBackend(Backend):
    kind = "ios"
    poll_s = 1.0  # how often the done marker is checked
    alive_check_s = 10.0  # how often the app's process is looked for while waiting

    def __init__(self, profile, options: BackendOptions, transport: IosTransport):
        super().__init__(profile, options)
        self.transport = transport
        self.udid = options.udid or (profile.serials[0] if profile.serials else None)
        self.bundle_id = bundle_id_from(options)
        self.app_path = Path(options.ios_app) if options.ios_app else None
        self.timeout_s = options.timeout_s
        self.workdir = Path(options.workdir or (REPO / ".cache" / "ios"))
        self.device: IosDevice | None = None
        self._remote: dict[str, str] = {}  # local program path -> Documents-relative path
        self._jobdir: Path | None = None
        self._runtime_version: str | None = None
        self.jobs: list[dict] = []

    # -- Backend ---------------------------------------------------------------------------
    def prepare(self) -> DeviceInfo:
        try:
            return self._prepare()
        except BaseException:
            self.transport.close()  # `with` skips cleanup() when prepare() fails
            raise

    def _prepare(self) -> DeviceInfo:
        self.device = dev = self.transport.connect(self.udid, self.profile.models,
                                                   self.profile.name)
        if not self.transport.app_installed():
            if self.app_path is None:
                raise UserError(f"the benchmark app ({self.bundle_id}) is not on the iPhone: "
                                "build it (ios_app/README.md) and pass its .ipa/.app with "
                                "FBNET_IOS_APP=path, or run it once from Xcode")
            self.transport.install_app(self.app_path)
        self.device_info = DeviceInfo(
            name=self.profile.name, model=dev.product_type, soc=iphone_soc(dev.product_type),
            cpu=iphone_soc(dev.product_type), os=f"iOS {dev.ios_version}",
            extra={"udid": dev.udid, "device_name": dev.name, "os_build": dev.build,
                   "app": self.bundle_id})
        return self.device_info

    def push_artifacts(self, programs: list[Program]) -> None:
        for prog in programs:
            self._ensure_on_device(Path(prog.path), prog.sha256)

    def _ensure_on_device(self, local: Path, digest: str | None = None) -> str:
        key = str(local.resolve())
        if key in self._remote:
            return self._remote[key]
        if not local.is_file():
            raise UserError(f"program {local} does not exist; re-export it")
        # Stored under their content hash: one already there is the same program.
        remote = f"{PROGRAMS_DIR}/{(digest or sha256_file(local))[:20]}{local.suffix}"
        if not self.transport.exists(remote):
            self.transport.push(local, remote)
        self._remote[key] = remote
        return remote

    def run_job(self, manifest: Manifest) -> BenchResult:
        manifest = self.start_job(manifest)
        started = time.monotonic()
        specs = [replace(spec, path=self._ensure_on_device(Path(spec.path)))
                 for spec in manifest.programs]
        job = replace(manifest, programs=specs)
        job_id = uuid.uuid4().hex[:12]
        self._jobdir = jobdir = self.workdir / "jobs" / job_id
        jobdir.mkdir(parents=True, exist_ok=True)
        job.save(jobdir / MANIFEST)

        for name in JOB_FILES:
            self.transport.remove(name)
        self.transport.remove(ETDUMP_DIR)
        self.transport.push(jobdir / MANIFEST, MANIFEST)
        self.transport.launch({"FBNET_JOB_ID": job_id})
        marker = self._wait_done(job_id, float(self.timeout_s or job_timeout_s(job)))

        if self.transport.exists(LOG):
            self.transport.pull(LOG, jobdir / LOG)
        if marker.exit_code not in (0, 1):  # 1 = some programs failed; the result is complete
            raise TransportError(f"the benchmark app rejected the job (exit {marker.exit_code}): "
                                 f"{marker.error or 'see ' + str(jobdir / LOG)}")
        self.transport.pull(RESULT, jobdir / RESULT)
        result = BenchResult.load(jobdir / RESULT)
        for prog, spec in zip(result.programs, manifest.programs):
            prog.path = str(spec.path)  # the local artifact again
            if prog.etdump:
                local = jobdir / prog.etdump
                self.transport.pull(prog.etdump, local)
                prog.etdump = str(local)
        self._runtime_version = result.runner.runtime_version
        if self.device is not None:
            result.device.update({"udid": self.device.udid, "product_type":
                                  self.device.product_type, "ios": self.device.ios_version})
        self.jobs.append({"job_id": job_id, "programs": len(job.programs),
                          "seconds": round(time.monotonic() - started, 2)})
        self.job_ended()
        return result

    def _wait_done(self, job_id: str, timeout_s: float) -> DoneMarker:
        """Poll for this job's done marker; notice an app that died without writing one."""
        deadline = time.monotonic() + timeout_s
        next_alive_check = time.monotonic() + self.alive_check_s
        gone_since = None
        while True:
            text = self.transport.read_text(DONE)
            if text is not None:
                marker = DoneMarker.parse(text)
                if marker.job_id == job_id:
                    return marker
            now = time.monotonic()
            if now >= deadline:
                raise TransportError(f"the benchmark app did not finish within {timeout_s:.0f} s; "
                                     "keep the iPhone unlocked, measure fewer programs per job, "
                                     "or raise the timeout")
            if now >= next_alive_check:
                next_alive_check = now + self.alive_check_s
                if self.transport.app_running():
                    gone_since = None
                elif gone_since is None:
                    gone_since = now  # it may be writing the marker right now: one more look
                else:
                    raise TransportError("the benchmark app stopped without finishing the job "
                                         "(crashed, killed, or the phone locked); its log is "
                                         f"Documents/{LOG}; unlock the iPhone and re-run")
            time.sleep(self.poll_s)

    def pull_results(self, dest: Path) -> list[Path]:
        """The last job's result.json, bench.log and ETDumps, copied into `dest`."""
        copied = []
        if self._jobdir is None:
            return copied
        for path in sorted(self._jobdir.rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                target = Path(dest) / path.relative_to(self._jobdir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                copied.append(target)
        return copied

    def runtime_info(self) -> RuntimeInfo:
        # The app links the XNNPACK delegate; programs are exported for the options' backend.
        return RuntimeInfo(name="executorch", version=self._runtime_version,
                           backend=getattr(self.options, "backend", "xnnpack"),
                           dtype=getattr(self.options, "dtype", None), threads=self.options.threads)

    def cleanup(self) -> None:
        """Delete the job's files from Documents; programs stay so a re-run pushes nothing."""
        try:
            if self.device is not None:
                for name in JOB_FILES:
                    self.transport.remove(name)
                self.transport.remove(ETDUMP_DIR)
        except TransportError:
            pass  # the phone went away; nothing of ours is left to lose
        finally:
            self.transport.close()
        if self.device_info is not None and self.jobs:
            self.device_info.extra["jobs"] = self.jobs


def bundle_id_from(options: BackendOptions) -> str:
    return options.bundle_id or DEFAULT_BUNDLE_ID


def create_backend(profile, options: BackendOptions) -> Backend:
    """The iOS backend on a real iPhone (pymobiledevice3); the phone is found in prepare()."""
    return IosBackend(profile, options, Pmd3Transport(bundle_id_from(options)))
