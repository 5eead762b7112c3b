"""Which LUT a search at a given input size prices with: the one given, or its sibling.

The file naming (<device>.json at 224x224, <device>_<R>.json at R x R, side by side) is
fbnet.lut's.
"""

from __future__ import annotations

from pathlib import Path

from fbnet.errors import UserError
from fbnet.lut import Lut, load_lut, lut_sibling_name


def lut_resolution(lut: Lut) -> int | None:
    return lut.space.resolution if lut.space else None


def sibling_lut(path: Path, resolution: int) -> Path | None:
    """The LUT next to `path` for the same device at `resolution`, if there is one."""
    sibling = path.with_name(lut_sibling_name(path.stem, resolution))
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
    raise UserError(
        f"{path} is a {res}x{res} LUT but the data is {resolution}x{resolution} and there is no "
        f"{lut_sibling_name(path.stem, resolution)} next to it; give a "
        f"{resolution}x{resolution} LUT or --resolution {res} to resize the data")
