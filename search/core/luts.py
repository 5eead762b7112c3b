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


def sibling_lut(path: Path, resolution: int) -> Lut | None:
    """The LUT next to `path` for the same device at `resolution`, if there is one."""
    sibling = path.with_name(lut_sibling_name(path.stem, resolution))
    if sibling == path or not sibling.is_file():
        return None
    lut = load_lut(sibling)
    return lut if lut_resolution(lut) == resolution else None


def resolve_lut(lut: Lut, resolution: int) -> tuple[Lut, str | None]:
    """The LUT to search with at `resolution` (`lut` or its sibling, each parsed once), and a
    note when it is the sibling."""
    res = lut_resolution(lut)
    if res is None or res == resolution:
        return lut, None
    path = Path(lut.path)
    sibling = sibling_lut(path, resolution)
    if sibling is not None:
        return sibling, (f"{path} is a {res}x{res} LUT and the data is "
                         f"{resolution}x{resolution}: searching with its sibling "
                         f"{sibling.path}")
    raise UserError(
        f"{path} is a {res}x{res} LUT but the data is {resolution}x{resolution} and there is no "
        f"{lut_sibling_name(path.stem, resolution)} next to it; give a "
        f"{resolution}x{resolution} LUT or --resolution {res} to resize the data")
