"""Latency without the device: a per-operator roofline model, fitted and validated on
HW-NAS-Bench's measured blocks and calibrated to published latencies (fbnet.published).

operators   what a workload runs (operator classes, MACs, elements moved)
model       the device model: a roofline per operator plus a dispatch cost
fit         fitting its coefficients in log space, with an optional prior
validation  held-out predictions on real phone blocks
devices     devices out of reach: calibration targets, hardware priors, held-out checks
hwnasbench  the HW-NAS-Bench reader, shared with `python -m profiler.lut import hwnasbench`
build       the device model of one device and the estimated LUT it prices
"""
