"""Which LUT a search at a given input size prices with: the one given, or its sibling.

LUT files are named <device>.json (224x224) and <device>_<R>.json (R x R), side by side in luts/.
"""

from __future__ import annotations

import re
from pathlib import Path

from fbnet.errors import UserError
from fbnet.lut import Lut, load_lut


def lut_resolution(lut: Lut) -> int | None:
    return int(lut.space["resolution"]) if lut.space and "resolution" in lut.space else None


def sibling_lut(path: Path, resolution: int) -> Path | None:
    """The LUT next to `path` for the same device at `resolution`, if there is one."""
    base = re.sub(r"_\d+$", "", path.stem)
    for name in (f"{base}_{resolution}.json", f"{base}.json"):
        sibling = path.with_name(name)
        if sibling != path and sibling.is_file() and lut_resolution(load_lut(sibling)) == resolution:
            return sibling
    return None


def resolve_lut(path: Path, resolution: int) -> tuple[Lut, str | None]:
    """The LUT to search with at `resolution`, and a note when it is a sibling of `path`."""
    lut = load_lut(path)
    res = lut_resolution(lut)
    if res is None or res == resolution:
        return lut, None
    sibling = sibling_lut(path, resolution)
    if sibling is not None:
        return load_lut(sibling), (f"{path} is a {res}x{res} LUT and the data is "
                                   f"{resolution}x{resolution}: searching with its sibling "
                                   f"{sibling}")
    base = re.sub(r"_\d+$", "", path.stem)
    raise UserError(
        f"{path} is a {res}x{res} LUT but the data is {resolution}x{resolution} and there is no "
        f"{base}_{resolution}.json next to it; give a {resolution}x{resolution} LUT or "
        f"--resolution {res} to resize the data")
