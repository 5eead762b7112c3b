"""Architectures: a space configuration plus one candidate name per searchable layer.

Architectures are plain data (as in mobile-vision's fbnet_v2 and timm's arch defs): the
published FBNets are entries in `NAMED_ARCHITECTURES`, and any architecture round-trips through
a small JSON file (`format: fbnet-arch/1`) or a timm-style arch string.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from fbnet.errors import UserError
from fbnet.io import atomic_write_text
from fbnet.published import latency_ms, top1
from fbnet.space import (CANDIDATE_NAMES, DEFAULT_HEAD_CHANNELS, DEFAULT_NUM_CLASSES, SpaceConfig,
                         default_layout, get_candidate)
from fbnet.workloads import Workload, candidate_workload, fixed_parts

ARCH_FORMAT = "fbnet-arch/1"


@dataclass(frozen=True)
class LayerCost:
    label: str  # "stem", "L1".."L22", "head", "pool", "classifier"
    candidate: str  # candidate name, or the fixed part's name
    workload: Workload
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def key(self) -> str:
        return self.workload.key

    @property
    def macs(self) -> int:
        return self.workload.macs

    @property
    def params(self) -> int:
        return self.workload.params


@dataclass(frozen=True)
class Architecture:
    name: str
    space: SpaceConfig
    candidates: tuple[str, ...]

    def __post_init__(self):
        n = self.space.num_layers
        if len(self.candidates) != n:
            raise UserError(
                f"architecture {self.name!r} lists {len(self.candidates)} candidates but the space "
                f"has {n} searchable layers; give exactly one candidate name per layer"
            )
        for name in self.candidates:
            get_candidate(name)

    def layers(self) -> list[LayerCost]:
        """Every part of the network in execution order, each with its workload."""
        space = self.space
        parts = fixed_parts(space)
        r, stem_out = space.resolution, space.stem_out_size
        rows = [LayerCost("stem", "conv3x3", parts.stem, (space.in_channels, r, r),
                          (space.stem_channels, stem_out, stem_out))]
        for shape, cand in zip(space.layers(), self.candidates):
            rows.append(LayerCost(shape.label, cand, candidate_workload(shape, cand),
                                  (shape.c_in, shape.height, shape.width),
                                  (shape.c_out, shape.out_height, shape.out_width)))
        f, last = space.final_size, space.stage_widths[-1]
        rows += [
            LayerCost("head", "conv1x1", parts.head, (last, f, f), (space.head_channels, f, f)),
            LayerCost("pool", "avgpool", parts.pool, (space.head_channels, f, f),
                      (space.head_channels,)),
            LayerCost("classifier", "fc", parts.classifier, (space.head_channels,),
                      (space.num_classes,)),
        ]
        return rows

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers())

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers())

    def to_dict(self) -> dict:
        return {"format": ARCH_FORMAT, "name": self.name, "space": self.space.to_dict(),
                "candidates": list(self.candidates)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "architecture") -> "Architecture":
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a JSON object with 'space' and 'candidates'")
        fmt = data.get("format", ARCH_FORMAT)
        if fmt != ARCH_FORMAT:
            raise UserError(f"{source}: format {fmt!r} is not {ARCH_FORMAT!r}")
        if "candidates" not in data:
            raise UserError(f"{source}: missing 'candidates' (a list of candidate names)")
        cands = data["candidates"]
        if not isinstance(cands, list) or not all(isinstance(c, str) for c in cands):
            raise UserError(f"{source}: 'candidates' must be a list of candidate names")
        space = SpaceConfig.from_dict(data.get("space", {}))
        return cls(str(data.get("name", "custom")), space, tuple(cands))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def with_space(self, space: SpaceConfig) -> "Architecture":
        return Architecture(self.name, space, self.candidates)


def _fbnet_layers(table: str) -> tuple[str, ...]:
    return tuple(table.split())


# FBNet-A/B/C: the official model definitions (facebookresearch/mobile-vision), in-space version;
# FBNet-S8, FBNet-iPhoneX and FBNet-96-0.35-1: transcribed from the paper's figures
# (fbnet.published.FBNET_PAPER).
# MobileNetV2: MobileNetV2 (Sandler et al., CVPR 2018), Table 2.
_PUBLISHED = {
    "fbnet_a": ("skip k3_e3 k3_e1 skip skip k5_e6 k3_e3 k5_e1 k3_e3 k5_e6 k5_e3 k5_e1_g2 "
                "k5_e6 k3_e6 k5_e1_g2 k5_e3 k3_e1_g2 k5_e6 k5_e6 k5_e3 k5_e6 k5_e6"),
    "fbnet_b": ("k3_e1 k3_e6 k5_e1 k3_e1 k3_e1 k5_e6 k5_e3 k3_e6 k5_e6 k5_e6 k5_e1 skip k5_e3 "
                "k5_e6 k3_e1 k5_e1 k5_e3 k5_e6 k5_e1 k5_e6 k5_e6 k3_e6"),
    "fbnet_c": ("k3_e1 k3_e6 skip k3_e1 k3_e1 k5_e6 k5_e3 k5_e6 k3_e6 k5_e6 k5_e3 k5_e6 k5_e6 "
                "k5_e6 k5_e6 k5_e6 k5_e3 k5_e6 k5_e6 k5_e6 k5_e6 k3_e6"),
    "fbnet_s8": ("k3_e1 k3_e3 k3_e1 skip skip k5_e6 k3_e3 k3_e3 k3_e6 k5_e6 k5_e3 k5_e3 k5_e3 "
                 "k3_e6 k5_e3 k5_e3 k5_e3 k5_e6 k5_e6 k5_e3 k5_e6 k5_e6"),
    "fbnet_iphonex": ("skip k3_e6 k3_e1 k3_e1 k3_e1 k3_e6 k3_e6 k3_e6 k3_e6 k3_e6 k3_e6 k3_e3 "
                      "k3_e6 k3_e6 k3_e3 k3_e3 k3_e3 k5_e6 k5_e6 k5_e6 k5_e3 k5_e6"),
    "fbnet_96": ("k3_e1 k3_e6 k3_e6 skip skip k5_e6 k5_e6 skip skip k5_e6 skip skip skip "
                 "k3_e6 skip skip skip k5_e6 k5_e6 skip skip k5_e6"),
}


@dataclass(frozen=True)
class NamedArchitecture:
    name: str
    description: str
    candidates: tuple[str, ...]
    resolution: int = 224
    head_channels: int = 1984
    stem_channels: int = 16
    stage_widths: tuple[int, ...] | None = None
    stage_depths: tuple[int, ...] | None = None


def _with_published(label: str, name: str) -> str:
    """`label` followed by the paper's top-1 and S8 latency of `name` (fbnet.published)."""
    return f"{label} (paper: {top1(name).value:.1f}% top-1, {latency_ms(name, 's8'):g} ms on S8)"


NAMED_ARCHITECTURES: dict[str, NamedArchitecture] = {
    a.name: a
    for a in (
        NamedArchitecture("fbnet_a", _with_published("FBNet-A", "fbnet_a"),
                          _fbnet_layers(_PUBLISHED["fbnet_a"]), head_channels=1504),
        NamedArchitecture("fbnet_b", _with_published("FBNet-B", "fbnet_b"),
                          _fbnet_layers(_PUBLISHED["fbnet_b"])),
        NamedArchitecture("fbnet_c", _with_published("FBNet-C", "fbnet_c"),
                          _fbnet_layers(_PUBLISHED["fbnet_c"])),
        NamedArchitecture("fbnet_s8", "FBNet-S8, searched for the Samsung S8 (paper figure)",
                          _fbnet_layers(_PUBLISHED["fbnet_s8"])),
        NamedArchitecture("fbnet_iphonex", "FBNet-iPhoneX, searched for the iPhone X (paper figure)",
                          _fbnet_layers(_PUBLISHED["fbnet_iphonex"])),
        NamedArchitecture("fbnet_96", "FBNet-96-0.35-1 (input 96, width 0.35)",
                          _fbnet_layers(_PUBLISHED["fbnet_96"]), resolution=96,
                          head_channels=1416, stem_channels=8,
                          stage_widths=(8, 16, 16, 24, 40, 72, 128)),
        NamedArchitecture("mobilenet_v2", "MobileNetV2 1.0 in this block space (first block "
                          "keeps FBNet's 1x1 conv at e=1)",
                          ("k3_e1",) + ("k3_e6",) * 16, head_channels=1280, stem_channels=32,
                          stage_widths=(16, 24, 32, 64, 96, 160, 320),
                          stage_depths=(1, 2, 3, 4, 3, 3, 1)),
    )
}


def named_architecture(name: str, *, resolution: int | None = None, width: float = 1.0,
                       num_classes: int | None = None) -> Architecture:
    try:
        spec = NAMED_ARCHITECTURES[name]
    except KeyError:
        raise UserError(
            f"unknown architecture {name!r}; named ones: {', '.join(NAMED_ARCHITECTURES)} "
            "(or give the path to an architecture JSON file)"
        ) from None
    res = resolution or spec.resolution
    layout_small = res <= 64
    space = SpaceConfig.create(
        res,
        width=width,
        stem_channels=spec.stem_channels,
        stage_widths=spec.stage_widths,
        stage_depths=spec.stage_depths,
        # the small layout has its own (HW-NAS-Bench) head unless the net defines one
        head_channels=None if layout_small and spec.head_channels == 1984 else spec.head_channels,
        num_classes=num_classes,
    )
    return Architecture(name, space, spec.candidates)


# --- architectures the published facts compare with ------------------------------------------

def mnasnet_in_space() -> Architecture:
    """MnasNet (as FBNet compares with it in Table 3), approximated in this block space.

    Same stages, widths, kernels and expansions (k3 e3 x3 / k5 e3 x3 / k5 e6 x3 / k3 e6 x2 /
    k5 e6 x4 / k3 e6 x1, stem 32, head 1280), but its first block (a separable 3x3 conv) gets
    FBNet's extra 1x1 conv, like `mobilenet_v2` here: about 4% more MACs than the original.
    """
    space = SpaceConfig.create(224, stem_channels=32, stage_widths=(16, 24, 40, 80, 96, 192, 320),
                               stage_depths=(1, 3, 3, 3, 2, 4, 1), head_channels=1280)
    cands = ("k3_e1",) + ("k3_e3",) * 3 + ("k5_e3",) * 3 + ("k5_e6",) * 3 + ("k3_e6",) * 2 \
        + ("k5_e6",) * 4 + ("k3_e6",)
    return Architecture("mnasnet", space, cands)


def mobilenet_v2_13() -> Architecture:
    """MobileNetV2 1.3 in this space: widths x1.3 (rounded to 8), head 1664 (1280 x 1.3)."""
    base = named_architecture("mobilenet_v2")
    s = base.space
    space = SpaceConfig.create(224, width=1.3, stem_channels=s.stem_channels,
                               stage_widths=s.stage_widths, stage_depths=s.stage_depths,
                               head_channels=1664)
    return Architecture("mobilenet_v2_1.3", space, base.candidates)


# The architectures fbnet.published has facts about beyond the named ones.
_COMPARED = {"mnasnet": mnasnet_in_space, "mobilenet_v2_1.3": mobilenet_v2_13}


def published_architecture(name: str) -> Architecture:
    """An architecture fbnet.published has facts about, at 224: a named one, or one the paper
    compares with (MnasNet, MobileNetV2 1.3), approximated in this block space."""
    if name in _COMPARED:
        return _COMPARED[name]()
    return named_architecture(name)


# --- the MobileNetV2 family: the baseline a searched network has to beat ----------------------

# The widths MobileNetV2's paper publishes (Sandler et al., Table 6) at or below 1.0.
MOBILENET_V2_WIDTHS = (0.35, 0.5, 0.75, 1.0)
_MOBILENET_V2_AT_WIDTH = re.compile(r"mobilenet_v2_(\d+(?:\.\d+)?)$")


def mobilenet_v2(width: float, *, resolution: int | None = None,
                 num_classes: int | None = None) -> Architecture:
    """MobileNetV2 at a width multiplier, named `mobilenet_v2_<width>`: every width (stem
    included) scaled and rounded to 8, the 1280-channel head kept below width 1, as in the
    MobileNetV2 paper."""
    base = named_architecture("mobilenet_v2", resolution=resolution, width=width,
                              num_classes=num_classes)
    return Architecture(f"mobilenet_v2_{width:g}", base.space, base.candidates)


def load_architecture(spec: str, *, resolution: int | None = None, width: float = 1.0,
                      num_classes: int | None = None) -> Architecture:
    """A named architecture, `mobilenet_v2_<width>` (e.g. mobilenet_v2_0.5), an architecture
    JSON file, `samples.json#K` (K-th sample), or an arch string (`to_arch_string`; its strides
    say its layout: 224 or 32 unless `resolution`)."""
    if spec in NAMED_ARCHITECTURES:
        return named_architecture(spec, resolution=resolution, width=width,
                                  num_classes=num_classes)
    family = _MOBILENET_V2_AT_WIDTH.match(spec)
    if family:
        multiplier = float(family.group(1))
        if not multiplier > 0:
            raise UserError(f"{spec}: the width multiplier must be positive")
        return mobilenet_v2(multiplier * width, resolution=resolution, num_classes=num_classes)
    if _TOKEN.match(spec.split("|")[0].split(",")[0]) and not spec.endswith(".json"):
        return _from_arch_string_spec(spec, resolution, width, num_classes)
    path_str, _, index = spec.partition("#")
    path = Path(path_str)
    if not path.suffix == ".json" and not path.exists():
        raise UserError(
            f"unknown architecture {spec!r}; named ones: {', '.join(NAMED_ARCHITECTURES)} "
            "(or give the path to an architecture JSON file)"
        )
    if not path.is_file():
        raise UserError(f"architecture file {path} does not exist; check the path")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); fix or regenerate the file") from None
    if isinstance(data, dict) and "samples" in data:
        samples = data["samples"]
        k = int(index) if index.isdigit() else 0
        if not 0 <= k < len(samples):
            raise UserError(f"{path} has {len(samples)} samples; pick one with #0..#{len(samples)-1}")
        data = samples[k].get("architecture", samples[k])
    arch = Architecture.from_dict(data, source=str(path))
    return at_resolution(arch, resolution, width=width, num_classes=num_classes)


def _from_arch_string_spec(text: str, resolution: int | None, width: float,
                           num_classes: int | None) -> Architecture:
    def parse(res: int) -> Architecture:
        return from_arch_string(text, name="arch_string", resolution=res, num_classes=num_classes)

    if resolution:
        arch = parse(resolution)
    else:  # the strides say the layout: try the imagenet one (224), then the small one (32)
        try:
            arch = parse(224)
        except UserError:
            arch = parse(32)
    return at_resolution(arch, width=width)


def at_resolution(arch: Architecture, resolution: int | None = None, *, width: float = 1.0,
                  num_classes: int | None = None) -> Architecture:
    """The same candidates and widths for input size `resolution` (default: the architecture's
    own), every width scaled by `width`, with `num_classes` outputs (default: its own). A head
    or class count that was the old layout's default becomes the new layout's, as for named
    architectures; any other is kept."""
    s = arch.space
    res = resolution or s.resolution
    if res == s.resolution and width == 1.0 and num_classes in (None, s.num_classes):
        return arch
    layout = s.layout if res == s.resolution else default_layout(res)
    moved = layout != s.layout
    default_head = moved and s.head_channels == DEFAULT_HEAD_CHANNELS[s.layout]
    default_classes = moved and s.num_classes == DEFAULT_NUM_CLASSES[s.layout]
    return arch.with_space(SpaceConfig.create(
        res, layout=layout, width=width, stem_channels=s.stem_channels,
        stage_widths=s.stage_widths, stage_depths=s.stage_depths,
        head_channels=None if default_head else s.head_channels,
        num_classes=num_classes or (None if default_classes else s.num_classes),
        in_channels=s.in_channels))


def save_architecture(arch: Architecture, path: Path) -> None:
    atomic_write_text(Path(path), arch.to_json())


# --- timm-style arch strings ------------------------------------------------------------------
# One token per run of identical layers in a stage: ir_r{repeat}_k{k}_s{stride}_e{e}_c{ch}[_g2]
# for inverted residuals and skip_r{repeat}_s{stride}_c{ch} for skips; stages joined by "|".

_TOKEN = re.compile(r"(ir|skip)((?:_[a-z]+\d+)+)")


def _token(cand: str, repeat: int, stride: int, channels: int) -> str:
    c = get_candidate(cand)
    if c.is_skip:
        return f"skip_r{repeat}_s{stride}_c{channels}"
    tok = f"ir_r{repeat}_k{c.kernel}_s{stride}_e{c.expansion}_c{channels}"
    return tok + (f"_g{c.groups}" if c.groups > 1 else "")


def to_arch_def(arch: Architecture) -> list[list[str]]:
    """Per stage, the list of block tokens (timm's `arch_def` shape)."""
    stages, i = [], 0
    s = arch.space
    for width, depth, stride in zip(s.stage_widths, s.stage_depths, s.stage_strides):
        cands = arch.candidates[i:i + depth]
        i += depth
        tokens = []
        j = 0
        while j < depth:
            # the first layer carries the stage stride, so it never merges with the next
            run = 1
            if j > 0:
                while j + run < depth and cands[j + run] == cands[j]:
                    run += 1
            tokens.append(_token(cands[j], run, stride if j == 0 else 1, width))
            j += run
        stages.append(tokens)
    return stages


def to_arch_string(arch: Architecture) -> str:
    return "|".join(",".join(stage) for stage in to_arch_def(arch))


def _parse_token(token: str) -> tuple[str, int, int, int]:
    match = _TOKEN.fullmatch(token)
    if not match:
        raise UserError(f"bad block token {token!r}; expected e.g. ir_r1_k3_s2_e6_c24 or skip_r2_s1_c24")
    fields = {m[0]: int(m[1]) for m in re.findall(r"_([a-z]+)(\d+)", match.group(2))}
    repeat, stride, channels = fields.get("r", 1), fields.get("s", 1), fields.get("c")
    if channels is None:
        raise UserError(f"block token {token!r} needs a channel count (_cN)")
    if match.group(1) == "skip":
        return "skip", repeat, stride, channels
    name = f"k{fields.get('k', 3)}_e{fields.get('e', 1)}"
    if fields.get("g", 1) > 1:
        name += f"_g{fields['g']}"
    return get_candidate(name).name, repeat, stride, channels


def from_arch_def(arch_def: list[list[str]], *, name: str = "custom", resolution: int = 224,
                  stem_channels: int = 16, head_channels: int | None = None,
                  num_classes: int | None = None) -> Architecture:
    cands, widths, depths, strides = [], [], [], []
    for stage in arch_def:
        depth, width, stride = 0, None, None
        for k, token in enumerate(stage):
            cand, repeat, s, c = _parse_token(token)
            if width is not None and c != width:
                raise UserError(f"stage tokens {stage} mix channel counts; one width per stage")
            width, stride = c, (s if k == 0 else stride)
            cands += [cand] * repeat
            depth += repeat
        widths.append(width)
        depths.append(depth)
        strides.append(stride)
    space = SpaceConfig.create(resolution, stem_channels=stem_channels,
                               stage_widths=tuple(widths), stage_depths=tuple(depths),
                               head_channels=head_channels, num_classes=num_classes)
    if tuple(strides) != space.stage_strides:
        raise UserError(
            f"stage strides {strides} do not match the {space.layout} layout "
            f"{list(space.stage_strides)} at resolution {resolution}"
        )
    return Architecture(name, space, tuple(cands))


def from_arch_string(text: str, **kwargs) -> Architecture:
    return from_arch_def([s.split(",") for s in text.strip().split("|")], **kwargs)


def candidate_index(name: str) -> int:
    return CANDIDATE_NAMES.index(get_candidate(name).name)


def count_architectures(space: SpaceConfig) -> int:
    return math.prod([len(CANDIDATE_NAMES)] * space.num_layers)
