"""The FBNet search space: candidate blocks and the macro-architecture (layer shapes).

Facts from the FBNet paper (Tables 1 and 2) and HW-NAS-Bench's small-input layout; see
README "Search space". Everything here is plain data: no torch import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from fbnet.errors import UserError


@dataclass(frozen=True)
class Candidate:
    """One of the 9 choices of a searchable layer (FBNet Table 2)."""

    name: str
    expansion: int = 0  # 0 for skip
    kernel: int = 0
    groups: int = 1

    @property
    def is_skip(self) -> bool:
        return self.name == "skip"


# Order matters: it is the candidate index used by HW-NAS-Bench (0..8) and by theta's columns.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("k3_e1", 1, 3, 1),
    Candidate("k3_e1_g2", 1, 3, 2),
    Candidate("k3_e3", 3, 3, 1),
    Candidate("k3_e6", 6, 3, 1),
    Candidate("k5_e1", 1, 5, 1),
    Candidate("k5_e1_g2", 1, 5, 2),
    Candidate("k5_e3", 3, 5, 1),
    Candidate("k5_e6", 6, 5, 1),
    Candidate("skip"),
)
CANDIDATE_NAMES: tuple[str, ...] = tuple(c.name for c in CANDIDATES)
_BY_NAME = {c.name: c for c in CANDIDATES}


def get_candidate(name: str) -> Candidate:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UserError(
            f"unknown candidate block {name!r}; valid names: {', '.join(CANDIDATE_NAMES)}"
        ) from None


LAYOUTS = ("imagenet", "small")
DEFAULT_STAGE_WIDTHS = (16, 24, 32, 64, 112, 184, 352)
DEFAULT_STAGE_DEPTHS = (1, 4, 4, 4, 4, 4, 1)
STAGE_STRIDES = {"imagenet": (1, 2, 2, 2, 1, 2, 1), "small": (1, 1, 2, 2, 1, 2, 1)}
STEM_STRIDE = {"imagenet": 2, "small": 1}
DEFAULT_HEAD_CHANNELS = {"imagenet": 1984, "small": 1504}
DEFAULT_NUM_CLASSES = {"imagenet": 1000, "small": 100}
# Inputs at or below this size use the small-input (CIFAR) layout unless told otherwise.
SMALL_LAYOUT_MAX_RESOLUTION = 64


def default_layout(resolution: int) -> str:
    return "small" if resolution <= SMALL_LAYOUT_MAX_RESOLUTION else "imagenet"


def make_divisible(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor`, never losing more than 10%."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def conv_out(size: int, stride: int) -> int:
    """Output size of a conv with padding k//2 (odd k) or a 1x1 conv: ceil(size / stride)."""
    return (size - 1) // stride + 1


def keeps_shape(stride: int, c_in: int, c_out: int) -> bool:
    """The one rule for residual layers: stride 1 and the same width (a block adds its input,
    skip is the identity)."""
    return stride == 1 and c_in == c_out


@dataclass(frozen=True)
class LayerShape:
    """The shape one searchable layer sees: input H x W x C_in, output C_out, stride."""

    index: int  # 0-based position among the searchable layers
    stage: int  # 1-based stage number
    height: int
    width: int
    c_in: int
    c_out: int
    stride: int

    @property
    def label(self) -> str:
        return f"L{self.index + 1}"

    @property
    def is_residual(self) -> bool:
        """Stride 1 and the same width: blocks add their input, skip is the identity."""
        return keeps_shape(self.stride, self.c_in, self.c_out)

    @property
    def out_height(self) -> int:
        return conv_out(self.height, self.stride)

    @property
    def out_width(self) -> int:
        return conv_out(self.width, self.stride)


@dataclass(frozen=True)
class SpaceConfig:
    """A macro-architecture: input size, layout, channel widths, head, classes.

    Build one with `SpaceConfig.create(...)`, which fills layout-dependent defaults and checks
    the values; the dataclass fields are the JSON form (see `to_dict`).
    """

    resolution: int = 224
    layout: str = "imagenet"
    stem_channels: int = 16
    stage_widths: tuple[int, ...] = DEFAULT_STAGE_WIDTHS
    stage_depths: tuple[int, ...] = DEFAULT_STAGE_DEPTHS
    head_channels: int = 1984
    num_classes: int = 1000
    in_channels: int = 3
    stage_strides: tuple[int, ...] = field(default=STAGE_STRIDES["imagenet"])
    stem_stride: int = 2

    @classmethod
    def create(
        cls,
        resolution: int = 224,
        *,
        layout: str | None = None,
        width: float = 1.0,
        stem_channels: int | None = None,
        stage_widths: tuple[int, ...] | None = None,
        stage_depths: tuple[int, ...] | None = None,
        head_channels: int | None = None,
        num_classes: int | None = None,
        in_channels: int = 3,
    ) -> "SpaceConfig":
        if layout is None:
            layout = default_layout(resolution)
        if layout not in LAYOUTS:
            raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
        if not width > 0:
            raise UserError(f"width multiplier must be positive, got {width}")
        widths = tuple(stage_widths or DEFAULT_STAGE_WIDTHS)
        stem = stem_channels or 16
        if width != 1.0:
            widths = tuple(make_divisible(c * width) for c in widths)
            stem = make_divisible(stem * width)
        head = head_channels or DEFAULT_HEAD_CHANNELS[layout]
        if width > 1.0 and head_channels is None:
            head = make_divisible(head * width)  # MobileNet convention: only widen the head
        space = cls(
            resolution=resolution,
            layout=layout,
            stem_channels=stem,
            stage_widths=widths,
            stage_depths=tuple(stage_depths or DEFAULT_STAGE_DEPTHS),
            head_channels=head,
            num_classes=num_classes or DEFAULT_NUM_CLASSES[layout],
            in_channels=in_channels,
            stage_strides=STAGE_STRIDES[layout],
            stem_stride=STEM_STRIDE[layout],
        )
        space.check()
        return space

    def check(self) -> None:
        if self.layout not in LAYOUTS:
            raise UserError(f"unknown layout {self.layout!r}; use one of {', '.join(LAYOUTS)}")
        n_stages = len(STAGE_STRIDES[self.layout])
        if len(self.stage_widths) != n_stages or len(self.stage_depths) != n_stages:
            raise UserError(
                f"the space needs {n_stages} stage widths and depths, got "
                f"{len(self.stage_widths)} widths and {len(self.stage_depths)} depths"
            )
        if any(c <= 0 or c % 2 for c in (*self.stage_widths, self.stem_channels)):
            raise UserError(
                f"channel widths must be positive and even (group-2 candidates split them), got "
                f"stem {self.stem_channels}, stages {list(self.stage_widths)}"
            )
        if any(d < 1 for d in self.stage_depths):
            raise UserError(f"every stage needs at least one layer, got {list(self.stage_depths)}")
        if self.head_channels < 1 or self.num_classes < 1 or self.in_channels < 1:
            raise UserError("head channels, class count and input channels must be positive")
        min_res = self.total_stride
        if not isinstance(self.resolution, int) or self.resolution < min_res:
            raise UserError(
                f"resolution {self.resolution} is impossible for the {self.layout} layout "
                f"(total stride {self.total_stride}); use at least {min_res}, e.g. 224 or 32"
            )

    @property
    def total_stride(self) -> int:
        return self.stem_stride * math.prod(self.stage_strides)

    @property
    def num_layers(self) -> int:
        return sum(self.stage_depths)

    @property
    def stem_out_size(self) -> int:
        return conv_out(self.resolution, self.stem_stride)

    def layers(self) -> tuple[LayerShape, ...]:
        shapes = []
        size, c_in = self.stem_out_size, self.stem_channels
        for stage, (c_out, depth, stride) in enumerate(
            zip(self.stage_widths, self.stage_depths, self.stage_strides), start=1
        ):
            for i in range(depth):
                s = stride if i == 0 else 1
                shapes.append(LayerShape(len(shapes), stage, size, size, c_in, c_out, s))
                size, c_in = conv_out(size, s), c_out
        return tuple(shapes)

    @property
    def final_size(self) -> int:
        return self.layers()[-1].out_height

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("stage_widths", "stage_depths", "stage_strides"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SpaceConfig":
        if not isinstance(data, dict):
            raise UserError("the 'space' field must be an object with resolution, widths, ...")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown space field(s) {sorted(unknown)}; known: {sorted(known)}")
        layout = data.get("layout") or default_layout(int(data.get("resolution", 224)))
        try:
            space = cls.create(
                int(data.get("resolution", 224)),
                layout=layout,
                stem_channels=data.get("stem_channels"),
                stage_widths=tuple(data["stage_widths"]) if "stage_widths" in data else None,
                stage_depths=tuple(data["stage_depths"]) if "stage_depths" in data else None,
                head_channels=data.get("head_channels"),
                num_classes=data.get("num_classes"),
                in_channels=int(data.get("in_channels", 3)),
            )
        except (TypeError, ValueError) as err:
            raise UserError(f"malformed space description: {err}") from None
        for key in ("stage_strides", "stem_stride"):
            if key in data and data[key] != space.to_dict()[key]:
                raise UserError(
                    f"space field {key}={data[key]} does not match the {layout} layout "
                    f"({space.to_dict()[key]}); drop it or change 'layout'"
                )
        return space

    def with_classes(self, num_classes: int) -> "SpaceConfig":
        return replace(self, num_classes=num_classes)
