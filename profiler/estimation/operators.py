"""Operators: what a workload runs, by operator class, with its MACs and tensor elements.

Every workload (fbnet.workloads) decomposes into operators of a few classes: dense 1x1 conv,
grouped 1x1 conv, kxk depthwise conv (by k), full conv (the stem), fully connected, and the
memory-only operators channel shuffle, residual add, pooling and copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from fbnet.workloads import AvgPool, ConvBlock, ConvNorm, FullyConnected, Skip, Workload, conv_out

MAC_CLASSES = ("conv1x1", "gconv1x1", "dwconv3", "dwconv5", "conv_full", "fc")
MEMORY_CLASSES = ("shuffle", "add", "pool", "copy")
OP_CLASSES = MAC_CLASSES + MEMORY_CLASSES


@dataclass(frozen=True)
class Op:
    """One operator of a workload: its class, multiply-accumulates, and tensor elements moved."""

    op_class: str
    macs: int
    elements: int  # activations read + written + weights read


def _conv(h: int, w: int, c_in: int, c_out: int, kernel: int, stride: int, groups: int) -> Op:
    ho, wo = conv_out(h, stride), conv_out(w, stride)
    macs = ho * wo * c_out * (c_in // groups) * kernel * kernel
    elements = h * w * c_in + ho * wo * c_out + c_out * (c_in // groups) * kernel * kernel
    if groups == c_in == c_out and groups > 1:
        # depthwise: kernels other than 3 and 5 (not in the FBNet space) use the nearer class;
        # the k*k MAC count still scales their cost.
        op_class = "dwconv3" if kernel <= 3 else "dwconv5"
    elif kernel == 1:
        op_class = "conv1x1" if groups == 1 else "gconv1x1"
    else:
        op_class = "conv_full"
    return Op(op_class, macs, elements)


def decompose(workload: Workload) -> list[Op]:
    """The operators a workload runs (BN folded into the conv, ReLU fused, as deployed)."""
    if isinstance(workload, ConvBlock):
        b = workload
        mid = b.mid_channels
        ho, wo = conv_out(b.height, b.stride), conv_out(b.width, b.stride)
        ops = [_conv(b.height, b.width, b.c_in, mid, 1, 1, b.groups)]
        if b.groups > 1:
            ops.append(Op("shuffle", 0, 2 * b.height * b.width * mid))
        ops.append(_conv(b.height, b.width, mid, mid, b.kernel, b.stride, mid))
        ops.append(_conv(ho, wo, mid, b.c_out, 1, 1, b.groups))
        if b.has_residual:
            ops.append(Op("add", 0, 3 * ho * wo * b.c_out))
        return ops
    if isinstance(workload, Skip):
        if workload.is_identity:
            return [Op("copy", 0, 2 * workload.height * workload.width * workload.c_in)]
        return [_conv(workload.height, workload.width, workload.c_in, workload.c_out, 1,
                      workload.stride, 1)]
    if isinstance(workload, ConvNorm):
        return [_conv(workload.height, workload.width, workload.c_in, workload.c_out,
                      workload.kernel, workload.stride, workload.groups)]
    if isinstance(workload, AvgPool):
        n = workload.height * workload.width * workload.c_in
        return [Op("pool", 0, n + workload.c_out)]
    if isinstance(workload, FullyConnected):
        f = workload
        return [Op("fc", f.c_in * f.c_out, f.c_in + f.c_out + f.c_in * f.c_out + f.c_out)]
    raise TypeError(f"not a workload: {workload!r}")

