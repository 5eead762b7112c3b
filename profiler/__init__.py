"""On-device latency profiling of the FBNet search space: export, run, measure, write a LUT."""
