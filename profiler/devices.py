"""Named device profiles: `--device NAME` -> which backend, how to recognise the device, and
its default measuring settings.

    host                 this machine's CPU (in-process ExecuTorch runtime)
    s8                   Samsung Galaxy S8 (Android, ro.product.model SM-G950*)
    pixel3               Google Pixel 3 (Android, "Pixel 3")
    iphone_x             iPhone X (iOS, ProductType iPhone10,3 / iPhone10,6)
    android:SERIAL[,..]  any Android phone(s) by adb serial
    ios:UDID             any iPhone by UDID
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from fbnet.errors import UserError

KINDS = ("host", "android", "ios")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    kind: str  # host | android | ios: selects profiler/backends/<kind>.py
    description: str
    # How a backend recognises the device: glob patterns on the model / product type, or
    # explicit serials (android) / UDIDs (ios). Empty: take the only device attached.
    models: tuple[str, ...] = ()
    serials: tuple[str, ...] = ()
    # Default settings a backend applies unless the command line overrides them.
    threads: int = 1
    pin_big_cores: bool = False  # taskset to the fastest cores (Android)
    cooldown_s: float = 0.0  # sleep between rounds (phones throttle)
    extra: dict = field(default_factory=dict)

    def matches_model(self, model: str | None) -> bool:
        """True if a device reporting `model` is this profile (no patterns: anything matches)."""
        if not self.models:
            return True
        return model is not None and any(fnmatch.fnmatch(model, p) for p in self.models)


PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile("host", "host", "this machine's CPU through the in-process ExecuTorch "
                      "runtime"),
        DeviceProfile("s8", "android", "Samsung Galaxy S8 (Snapdragon 835 / Exynos 8895)",
                      models=("SM-G950*",), pin_big_cores=True, cooldown_s=1.0),
        DeviceProfile("pixel3", "android", "Google Pixel 3 (Snapdragon 845)",
                      models=("Pixel 3",), pin_big_cores=True, cooldown_s=1.0),
        DeviceProfile("iphone_x", "ios", "Apple iPhone X (A11 Bionic)",
                      models=("iPhone10,3", "iPhone10,6"), cooldown_s=1.0),
    )
}


def resolve_device(spec: str) -> DeviceProfile:
    """`--device` value -> profile; unknown names are a one-line UserError."""
    spec = (spec or "").strip()
    if spec in PROFILES:
        return PROFILES[spec]
    kind, sep, ids = spec.partition(":")
    if sep and kind in ("android", "ios"):
        serials = tuple(s.strip() for s in ids.split(",") if s.strip())
        if not serials:
            what = "serial (adb devices)" if kind == "android" else "UDID (idevice_id -l)"
            raise UserError(f"--device {spec}: give the {what} after '{kind}:'")
        if kind == "ios" and len(serials) > 1:
            raise UserError(f"--device {spec}: one iPhone at a time; give a single UDID")
        generic = DeviceProfile(spec, kind, f"{kind} device {', '.join(serials)}",
                                serials=serials, pin_big_cores=kind == "android",
                                cooldown_s=1.0)
        return generic
    raise UserError(f"unknown device {spec!r}; use one of {', '.join(PROFILES)}, "
                    "android:SERIAL[,SERIAL...] or ios:UDID")

