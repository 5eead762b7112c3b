"""The per-operator latency model, its fitting and calibration, and the shipped estimated LUTs."""

import json
import math

import numpy as np
import pytest

from fbnet.arch import (load_architecture, mnasnet_in_space, mobilenet_v2_13,
                        named_architecture)
from fbnet.coverage import CLASSIFIER_CLASSES, lut_workloads
from fbnet.errors import UserError
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from fbnet.workloads import FullyConnected, Skip, parse_key, space_workloads
from profiler.estimation import hwnasbench
from profiler.estimation.build import build_model
from profiler.estimation.devices import device_spec, held_out_check
from profiler.estimation.fit import Observation, Prior, fit, fit_blocks
from profiler.estimation.hwnasbench import measured_tables
from profiler.estimation.model import COEFFICIENTS, DeviceModel
from profiler.estimation.operators import decompose
from profiler.estimation.validation import VALIDATION_NETWORKS, validate
from tests.conftest import ROOT

TRUE = {"conv1x1_gmacs": 12.0, "gconv1x1_gmacs": 5.0, "dwconv3_gmacs": 2.0,
        "dwconv5_gmacs": 3.0, "conv_full_gmacs": 6.0, "fc_gmacs": 1.5,
        "bandwidth_gbps": 8.0, "transpose_gbps": 1.0, "overhead_ms": 0.004}


def _synthetic_workloads():
    spaces = [SpaceConfig.create(224), SpaceConfig.create(32), SpaceConfig.create(160, width=0.5)]
    seen = {}
    for space in spaces:
        for w in space_workloads(space):
            seen.setdefault(w.key, w)
    return list(seen.values())


def test_operator_macs_add_up_to_the_workload():
    for space in (SpaceConfig.create(224), SpaceConfig.create(32),
                  named_architecture("fbnet_96").space):
        for w in space_workloads(space):
            assert sum(op.macs for op in decompose(w)) == w.macs, w.key


def test_decomposition_classes():
    classes = lambda key: [op.op_class for op in decompose(parse_key(key))]
    assert classes("ConvBlock_H56_W56_Cin24_Cout24_exp1_kernel5_stride1_group2") == \
        ["gconv1x1", "shuffle", "dwconv5", "gconv1x1", "add"]
    assert classes("ConvBlock_H56_W56_Cin24_Cout32_exp6_kernel3_stride2_group1") == \
        ["conv1x1", "dwconv3", "conv1x1"]
    assert classes("ConvNorm_H224_W224_Cin3_Cout16_kernel3_stride2_group1") == ["conv_full"]
    assert classes("ConvNorm_H7_W7_Cin352_Cout1984_kernel1_stride1_group1") == ["conv1x1"]
    assert classes("Skip_H56_W56_Cin24_Cout24_stride1") == ["copy"]
    assert classes("Skip_H56_W56_Cin24_Cout32_stride2") == ["conv1x1"]
    assert classes("AvgP_H7_W7_Cin1984_Cout1984_kernel7_stride1") == ["pool"]
    assert classes("FC_Cin1984_Cout1000") == ["fc"]
    # a kernel outside the space still prices (7x7 depthwise uses the 5x5 class, 49 taps)
    assert classes("ConvBlock_H14_W14_Cin64_Cout64_exp6_kernel7_stride1_group1")[1] == "dwconv5"


def test_identity_skip_is_free_in_a_deployed_network():
    skip = Skip(56, 56, 24, 24, 1)
    measured_alone = DeviceModel("a", TRUE, "fp32", elide_identity=False)
    deployed = DeviceModel("b", TRUE, "int8", elide_identity=True)
    assert measured_alone.latency_ms(skip) > 0
    assert deployed.latency_ms(skip) == 0


def test_roofline_takes_the_slower_of_compute_and_memory():
    slow_memory = {**TRUE, "bandwidth_gbps": 2.0}
    model = DeviceModel("m", slow_memory)
    fc = FullyConnected(1984, 1000)  # weights dominate: memory-bound at 2 GB/s in fp32
    (op,) = decompose(fc)
    memory = op.elements * 4 / 2e6
    compute = op.macs / 1.5e6
    assert memory > compute > memory / 4
    assert model.latency_ms(fc) == pytest.approx(memory + TRUE["overhead_ms"])
    assert DeviceModel("m8", slow_memory, "int8").latency_ms(fc) == pytest.approx(
        max(memory / 4, compute) + TRUE["overhead_ms"])


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_fit_recovers_known_coefficients(noise):
    truth = DeviceModel("truth", TRUE)
    rng = np.random.default_rng(1)
    obs = [Observation(w.key, (w,), truth.latency_ms(w) * math.exp(rng.normal(0, noise)))
           for w in _synthetic_workloads()]
    # every class is compute-bound somewhere and memory-only ops pin the bandwidth, so each
    # coefficient is identifiable
    fitted = fit(obs, name="synthetic").model.coefficients
    tolerance = 0.01 if noise == 0 else 0.12
    for name, value in TRUE.items():
        assert fitted[name] == pytest.approx(value, rel=tolerance), name


def test_prior_holds_what_the_data_cannot_see_and_targets_move_the_rest():
    prior_model = DeviceModel("prior", TRUE, "int8", True)
    prior = Prior(prior_model, {c: 0.5 for c in COEFFICIENTS}, scale_sigma=1.0)
    arch = named_architecture("fbnet_b")
    workloads = tuple(layer.workload for layer in arch.layers())
    prior_ms = prior_model.network_latency_ms(arch)
    # one network twice as slow as the prior says: the fit halves the device's speed, mostly
    # through the shared factor, and keeps the coefficients' ratios close to the prior's
    result = fit([Observation("b", workloads, 2 * prior_ms, 0.01)], name="x",
                    dtype="int8", elide_identity=True, prior=prior)
    assert result.predicted_ms[0] == pytest.approx(2 * prior_ms, rel=0.03)
    c = result.model.coefficients
    ratio = c["conv1x1_gmacs"] / c["dwconv3_gmacs"]
    assert ratio == pytest.approx(TRUE["conv1x1_gmacs"] / TRUE["dwconv3_gmacs"], rel=0.2)


def test_mnasnet_and_mobilenet_v2_13_are_priced():
    model = DeviceModel("m", TRUE, "int8", True)
    assert mnasnet_in_space().macs == pytest.approx(327e6, rel=0.05)
    assert mobilenet_v2_13().space.head_channels == 1664
    assert model.network_latency_ms(mobilenet_v2_13()) > \
        model.network_latency_ms(named_architecture("mobilenet_v2"))


# --- the shipped LUTs -----------------------------------------------------------------------

SHIPPED = {("s8", 224): "s8.json", ("s8", 32): "s8_32.json",
           ("iphone_x", 224): "iphone_x.json", ("iphone_x", 32): "iphone_x_32.json"}


def _price(lut, name):
    return lut.price(named_architecture(name)).total_ms


def test_s8_model_predicts_the_held_out_published_s8_latencies():
    """Calibrated on the paper's Table 3 S8 latencies alone, the S8 model predicts the two
    Table 5 S8 latencies it never saw (FBNet-S8 22.12 ms, FBNet-iPhoneX 23.33 ms) within the
    documented whole-network accuracy (5%), and ranks them as the paper does (4% apart).

    The shipped `iphone_x` LUT has no such check: its only targets are its two Table 5
    latencies, so its cross-device ratio is the fit itself (docs/estimated-luts.md)."""
    held_out = {"fbnet_s8": 22.12, "fbnet_iphonex": 23.33}
    reference = fit_blocks(measured_tables()["pixel3"], "pixel3").model
    check = held_out_check(device_spec("s8"), reference, list(held_out))
    assert {h.arch_name: h.published_ms for h in check} == held_out
    predicted = {h.arch_name: h.predicted_ms for h in check}
    assert all(h.calibrated_on == 6 for h in check)  # Table 3's six S8 latencies
    for name, published_ms in held_out.items():
        assert predicted[name] == pytest.approx(published_ms, rel=0.05), name
    assert predicted["fbnet_s8"] < predicted["fbnet_iphonex"]


@pytest.mark.parametrize("device,resolution", sorted(SHIPPED))
def test_shipped_lut_covers_the_space_and_says_it_is_an_estimate(device, resolution):
    lut = load_lut(ROOT / "luts" / SHIPPED[device, resolution])
    assert lut.provenance.kind == "estimated"
    details = lut.provenance.details
    space = SpaceConfig.create(resolution)
    # the whole space, plus what `profiler.estimate --extend` added and recorded
    added = {k for addition in details.get("additions", []) for k in addition["keys"]}
    assert set(lut.entries) == {w.key for w in lut_workloads(space, named=True)} | added
    head = space.head_channels
    assert all(f"FC_Cin{head}_Cout{n}" in lut.entries for n in CLASSIFIER_CLASSES)
    lut.layer_table(space)  # the search can price every candidate
    # every calibration target carries its residual, and the entries are the recorded model's
    targets = details["calibration_targets"]
    assert {t["arch"] for t in targets} >= {"fbnet_s8", "fbnet_iphonex"}
    assert all(abs(t["residual_pct"]) < 10 for t in targets)
    model = DeviceModel.from_dict(details["device_model"])
    for key, entry in lut.entries.items():
        assert entry.latency_ms == pytest.approx(model.latency_ms(parse_key(key)), abs=1e-5)
    assert details["validation"]["pixel3"][0]["split"] == "leave-one-shape-out"


def test_shipped_luts_are_what_the_model_produces_today():
    for device in ("s8", "iphone_x"):
        model, _ = build_model(device, None, with_validation=False, quiet=True)
        shipped = load_lut(ROOT / "luts" / SHIPPED[device, 224]).provenance.details
        for name, value in shipped["device_model"]["coefficients"].items():
            assert model.coefficients[name] == pytest.approx(value, rel=1e-3), (device, name)


def test_model_generalizes_to_held_out_pixel3_shapes():
    """Leave-one-shape-out on HW-NAS-Bench's Pixel 3 blocks, against the figures documented in
    docs/estimated-luts.md (MAPE 11.6%, 89.4% within 20%, Spearman 0.995; whole networks
    -4.7% to +0.3%). The fit is deterministic, so the bounds allow only for the optimizer's
    run-to-run wobble, not for a worse model."""
    table = measured_tables()["pixel3"]
    loso = validate(table, "pixel3", seeds=1)[0]
    assert loso.split == "leave-one-shape-out" and loso.blocks == 216
    assert loso.spearman > 0.99
    assert loso.mape_pct < 12.0
    assert loso.within_20_pct > 87.0
    assert set(loso.networks) == set(VALIDATION_NETWORKS)
    assert all(abs(e) < 0.05 for e in loso.networks.values()), loso.networks


def test_bad_hw_nas_bench_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        measured_tables(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"edgegpu_latency": {}}))
    with pytest.raises(UserError, match="pixel3_latency"):
        measured_tables(bad)


def test_without_data_the_shipped_model_is_reused(monkeypatch, tmp_path):
    monkeypatch.setattr(hwnasbench, "DEFAULT_SOURCE", tmp_path / "absent.json")
    model, details = build_model("s8", None)
    shipped = load_lut(ROOT / "luts/s8.json").provenance.details["device_model"]
    assert model.coefficients == shipped["coefficients"]
    assert "not re-fitted" in details["reused_from"]
    with pytest.raises(UserError, match="--hw-nas-bench"):
        build_model("raspi4", None)


# --- CLI ------------------------------------------------------------------------------------

def test_cli_unknown_device_and_missing_out_exit_2(cli, tmp_path):
    r = cli("profiler.estimate", "--device", "s9", "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown device 's9'" in r.stderr
    r = cli("profiler.estimate", "--device", "s8")
    assert r.returncode == 2 and "--out" in r.stderr
    r = cli("profiler.estimate", "--device", "s8", "--arch", "no_such_net", "--out",
            str(tmp_path / "x.json"))
    assert r.returncode == 2 and "unknown architecture" in r.stderr


def test_cli_arch_lut_covers_exactly_that_architecture(cli, tmp_path):
    out = tmp_path / "f96.json"
    r = cli("profiler.estimate", "--device", "iphone_x", "--arch", "fbnet_96", "--out", str(out),
            "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    lut = load_lut(out)
    arch = load_architecture("fbnet_96")
    assert set(lut.entries) == {layer.key for layer in arch.layers()}
    assert summary["arch_latency_ms"] == pytest.approx(lut.price(arch).total_ms, rel=1e-4)
    assert lut.space.resolution == 96


def test_cli_report_json(cli):
    r = cli("profiler.estimate", "--report", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert {s["split"] for s in report["validation"]["raspi4"]} >= {"leave-one-shape-out",
                                                                    "224 -> 32", "32 -> 224"}
    # the cross-device table prices the calibration's own targets: it checks that the report
    # shows the calibrated models (the held-out check is the test above), not a prediction
    cross = report["cross_device_ms"]
    assert cross["s8"]["fbnet_s8"] == pytest.approx(22.12, rel=0.03)
    assert cross["iphone_x"]["fbnet_iphonex"] == pytest.approx(19.84, rel=0.03)
    # the held-out predictions the test above checks, as the report prints them
    assert [(h["arch_name"], h["calibrated_on"]) for h in report["held_out"]["s8"]] == \
        [("fbnet_s8", 6), ("fbnet_iphonex", 6)]
    assert all(h["calibrated_on"] == 0 for h in report["held_out"]["iphone_x"])
