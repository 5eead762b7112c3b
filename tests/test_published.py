"""The published facts live in one registry (fbnet.published), and everything reads them there."""

import re

import pytest

from conftest import ROOT
from fbnet import published
from fbnet.arch import NAMED_ARCHITECTURES, published_architecture
from profiler.estimation.devices import DEVICE_SPECS

CODE_DIRS = ("fbnet", "profiler", "search", "benchmarks")


def test_every_fact_is_typed_and_cited_one_way():
    for fact in published.FACTS:
        assert fact.unit == {"top1": "%", "latency": "ms"}[fact.metric]
        assert re.fullmatch(r"FBNet \(Wu et al\., CVPR 2019\), Table \d", fact.source), fact
    keys = [(f.architecture, f.metric, f.device) for f in published.FACTS]
    assert len(keys) == len(set(keys))  # one value per architecture, metric and device


def test_every_fact_names_an_architecture_this_space_can_build():
    for fact in published.FACTS:
        arch = published_architecture(fact.architecture)
        assert arch.space.resolution == published.PUBLISHED_RESOLUTION and arch.macs > 0


def test_lookups():
    assert published.latency_ms("fbnet_iphonex", "iphone_x") == 19.84
    assert published.latency_ms("fbnet_b", "iphone_x") is None
    assert published.top1_fraction("fbnet_s8") == 0.7327
    assert published.top1_fraction("fbnet_96") is None
    # the abstract's cross-device claim: 1.4x on the iPhone X
    ratio = published.latency_ms("fbnet_s8", "iphone_x") / published.latency_ms(
        "fbnet_iphonex", "iphone_x")
    assert ratio == pytest.approx(1.39, abs=0.005)


def test_calibration_targets_are_the_registry():
    for device, spec in DEVICE_SPECS.items():
        assert [(t.arch_name, t.latency_ms) for t in spec.targets] == \
            [(f.architecture, f.value) for f in published.latencies(device)]
    assert NAMED_ARCHITECTURES["fbnet_a"].description.endswith("19.8 ms on S8)")


@pytest.mark.parametrize("number", ["22.12", "19.84", "27.53", "23.33", "73.27"])
def test_published_numbers_appear_only_in_the_registry(number):
    pattern = re.compile(r"(?<![\d.])" + re.escape(number) + r"(?!\d)")
    found = [str(path.relative_to(ROOT)) for d in CODE_DIRS for path in (ROOT / d).rglob("*.py")
             if pattern.search(path.read_text())]
    assert found == ["fbnet/published.py"], found
