"""The FBNet supernet: every searchable layer holds all 9 candidate blocks plus its theta row.

The candidates are `fbnet.blocks.build_workload_module` of exactly the workloads the LUT
prices, so the relaxed latency and the network agree block for block.

Masks are drawn per example (one Gumbel draw per example and layer, never one per batch):

- `soft`: m = softmax((theta + g) / tau); every candidate runs on the whole batch and the
  layer output is sum_i m_i * b_i(x) (the paper's relaxation; memory and compute ~9 networks).
- `sampled`: at the residual layers (stride 1, C_in == C_out, 16 of 22), per step and layer,
  `paths` candidates (default 2) are drawn from P_theta without replacement with a seed shared
  by all ranks; each example then draws a hard straight-through Gumbel choice among them
  (forward uses the one-hot, backward the soft gradient, as in GDAS/ProxylessNAS) and runs one
  block. The other layers (stride 2 or a new width: the stage boundaries) mix all 9 candidates
  per example, as in `soft` mode: with `boundary="entangled"` (the default) through one
  weight-entangled superblock (`EntangledBoundary`, ~2.3 blocks' time), with
  `boundary="separate"` as 9 independent blocks (~5.6 blocks' time).

Why the boundaries stay soft, and why residual candidates start as identities: a random path
per step (or per example) kept the supernet at chance top-1 for hundreds of steps. Each
candidate's output BN (gamma 1) adds a unit-variance term to the residual stream, and at a
stage boundary the whole feature basis is the sampled candidate's own, so the features the
next layers and the classifier see change at random every step. Measured on digits (32x32,
lr 0.017, 60 steps): one fixed path reaches ~0.7 train top-1; random paths stay at 0.10; random
residual blocks with zero-init output BN but fixed boundaries reach 0.74; zero-init plus soft
boundaries 0.90. So the residual candidates' last BN starts at gamma 0 (each starts as an
identity and grows into the stream) and the 6 boundary layers mix all 9 candidates.

Why entangled is the default: 9 independent boundary blocks make the boundaries ~70% of a
sampled step (2.9-3.3x a single network's step, against the 2x target; entangled: 1.87-1.98x).
The superblock's candidates are slices of one block, so the argmax architecture's boundary
blocks work alone with the supernet's weights (0.82-0.96 val top-1, separate: 0.24), and on
4-seed sanity runs its latency response matches separate's up to latency weight 4; it is
weaker at 16 and in the demo's 3-epoch searches (docs/search.md "Speed"). Training theta on
sampled sub-networks of the superblock does not work: alone they are at chance, since the
next layer only ever saw the mix (docs/search.md, "Tried and discarded").
"""

from __future__ import annotations

from dataclasses import dataclass

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from fbnet.blocks import InvertedResidual, build_workload_module
from fbnet.errors import UserError
from fbnet.model import FBNet
from fbnet.space import CANDIDATE_NAMES, CANDIDATES, SpaceConfig
from fbnet.workloads import Skip, candidate_workload, fixed_parts

MODES = ("soft", "sampled")
# sampled mode's stage-boundary layers: one weight-entangled superblock, or 9 separate blocks
BOUNDARIES = ("entangled", "separate")
DEFAULT_BOUNDARY = "entangled"
NUM_CANDIDATES = len(CANDIDATE_NAMES)
# Below this temperature softmax((theta+g)/tau) turns into an argmax whose gradient vanishes
# and whose logits overflow in float32 (a known failure of a re-implementation).
TAU_FLOOR = 0.05


def temperature(progress: float, tau0: float = 5.0, tau_final: float = 1.0) -> float:
    """The Gumbel temperature `progress` (0..1) of the way through the search: exponential
    from tau0 to tau_final, never below TAU_FLOOR."""
    return max(tau0 * (tau_final / tau0) ** min(max(progress, 0.0), 1.0), TAU_FLOOR)


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """Standard Gumbel samples -log(E), E ~ Exp(1), kept finite (E clamped away from 0)."""
    e = torch.empty(shape, device=device).exponential_(generator=generator)
    return -e.clamp_min(1e-20).log()


@dataclass
class Masks:
    """Per-example candidate weights [B, L, 9] and, in sampled mode, the chosen index [B, L]
    (-1 at the layers in `soft_layers`, which mix all candidates with `weights`)."""

    weights: torch.Tensor
    choice: torch.Tensor | None = None
    soft_layers: tuple[int, ...] = ()


class Nchw(nn.Module):
    """Runs a module in NCHW (contiguous) format inside the channels-last supernet.

    torch 2.13's oneDNN backward of a strided 1x1 conv in channels-last corrupts the heap with
    more than one thread (tests/test_search.py reproduces the shape); the strided `skip`
    projection is the only such conv in the space, so it alone stays NCHW.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.contiguous())


def _candidate_module(shape, name: str) -> nn.Module:
    workload = candidate_workload(shape, name)
    module = build_workload_module(workload)
    if isinstance(workload, Skip) and not workload.is_identity and workload.stride > 1:
        return Nchw(module)
    return module


def _dilate_on_cpu(conv: nn.Conv2d, args: tuple) -> None:
    conv.dilation = (2, 2) if args[0].is_cpu else (1, 1)


def _pointwise_convs_to_onednn(net: nn.Module) -> None:
    """Run every stride-1 1x1 conv with dilation 2 on the CPU. It computes exactly the same (a
    1x1 kernel has no taps to spread) but steers torch's backend choice: with one thread and
    fewer than 16 examples, torch 2.13 runs an undilated 1x1 conv through its THNN path, 2-3x
    slower forward + backward than oneDNN on channels-last input here, and sampled mode's
    residual layers run each candidate on about half the batch. Only the supernet does this:
    the networks that are trained and exported keep dilation 1."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1):
            m.register_forward_pre_hook(_dilate_on_cpu)


def _select_examples(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[idx] for a channels-last x, in one copy that stays channels-last."""
    return x.permute(0, 2, 3, 1).index_select(0, idx).permute(0, 3, 1, 2)


class MixedLayer(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.ops = nn.ModuleList(_candidate_module(shape, name) for name in CANDIDATE_NAMES)
        self.residual = shape.is_residual

    def zero_init_residuals(self) -> None:
        """Each residual candidate starts as the identity (its output BN's gamma at 0)."""
        for op in self.ops:
            if isinstance(op, InvertedResidual) and op.residual:
                nn.init.zeros_(op.project[1].weight)

    def forward_soft(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = None
        for i, op in enumerate(self.ops):
            y = weights[:, i].view(-1, 1, 1, 1) * op(x)
            out = y if out is None else out + y
        return out

    def forward_sampled(self, x: torch.Tensor, weights: torch.Tensor,
                        choice: torch.Tensor) -> torch.Tensor:
        # Each example runs only its chosen candidate: gather the examples of each candidate,
        # run its block once on them, and write the outputs back into place.
        out = None
        for k in torch.unique(choice).tolist():
            idx = (choice == k).nonzero().squeeze(1)
            whole = len(idx) == len(x)
            y = self.ops[k](x if whole else _select_examples(x, idx))
            if weights.requires_grad:  # else (weight steps) the hard weights are exactly 1
                y = y * weights[idx, k].view(-1, 1, 1, 1)
            if whole:
                return y
            if out is None:
                out = torch.empty((len(x), *y.shape[1:]), dtype=y.dtype, device=y.device,
                                  memory_format=torch.channels_last)
            out.index_copy_(0, idx, y)
        return out

    def forward_single(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return self.ops[k](x)


class EntangledBoundary(nn.Module):
    """A stage-boundary layer of the sampled-mode supernet: the soft mix of all 9 candidates,
    with the 8 MBConv candidates as sub-networks of one weight-entangled superblock.

    The superblock (Single-Path NAS's superkernel and FBNetV2's channel masking) has
    6*C_in hidden channels shared by the dense candidates (candidate k?_eE uses the first
    E*C_in) plus C_in of its own for the grouped e1 candidates, one depthwise conv per kernel
    size, one BN + ReLU after the depthwise mix, and one project conv + BN. The grouped
    candidates' 1x1 convs are the superblock's convs with block-diagonal weight masks (their
    channel shuffle folded into the mask). Per example, with w the candidate weights and
    s = 1 - w_skip:

        z = relu(bn(sum_k K_k * dwconv_k(expand(x)))) * U
        out = s * bn(project(z)) + w_skip * skip(x)

    where U[c] is the share of the non-skip weight on candidates that use hidden channel c and
    K_k[c] the share of those with kernel k. A one-hot w runs exactly one candidate (its
    slice of the weights), so the final network's blocks are sub-networks of what was
    trained. It costs ~2.3 blocks' time where 9 separate blocks cost ~5.6, and, sharing one
    feature basis across candidates, the supernet learns faster (docs/search.md "Speed").
    """

    residual = False

    def __init__(self, shape):
        super().__init__()
        c_in, c_out = shape.c_in, shape.c_out
        mbconv = [i for i, c in enumerate(CANDIDATES) if not c.is_skip]
        self.skip_index = next(i for i, c in enumerate(CANDIDATES) if c.is_skip)
        dense_mid = c_in * max(CANDIDATES[i].expansion for i in mbconv)
        grouped = [i for i in mbconv if CANDIDATES[i].groups > 1]
        grouped_mid = c_in * max((CANDIDATES[i].expansion for i in grouped), default=0)
        groups = {CANDIDATES[i].groups for i in grouped}
        if len(groups) > 1:
            raise ValueError("the superblock supports one group count")
        mid = dense_mid + grouped_mid
        self.kernels = sorted({CANDIDATES[i].kernel for i in mbconv})
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(mid)
        self.depthwise = nn.ModuleList(nn.Conv2d(mid, mid, k, shape.stride, k // 2, groups=mid,
                                                 bias=False) for k in self.kernels)
        self.depthwise_bn = nn.BatchNorm2d(mid)
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(c_out)
        self.skip = _candidate_module(shape, CANDIDATE_NAMES[self.skip_index])
        expand_mask = torch.ones(mid, c_in, 1, 1)
        project_mask = torch.ones(c_out, mid, 1, 1)
        if grouped:
            g = groups.pop()
            for j in range(grouped_mid):
                # grouped conv, then shuffle: hidden channel j belongs to input group j % g
                # and to project group j // (grouped_mid / g)
                expand_mask[dense_mid + j] = 0
                expand_mask[dense_mid + j, (j % g) * c_in // g:(j % g + 1) * c_in // g] = 1
                project_mask[:, dense_mid + j] = 0
                group = j // (grouped_mid // g)
                project_mask[group * c_out // g:(group + 1) * c_out // g, dense_mid + j] = 1
        # uses[i, c] = 1 where MBConv candidate i uses hidden channel c; kernel_of[i] its kernel
        uses = torch.zeros(NUM_CANDIDATES, mid)
        kernel_of = torch.zeros(len(self.kernels), NUM_CANDIDATES)
        for i in mbconv:
            cand = CANDIDATES[i]
            start = dense_mid if cand.groups > 1 else 0
            uses[i, start:start + c_in * cand.expansion] = 1
            kernel_of[self.kernels.index(cand.kernel), i] = 1
        for name, t in (("expand_mask", expand_mask), ("project_mask", project_mask),
                        ("uses", uses), ("kernel_of", kernel_of)):
            self.register_buffer(name, t, persistent=False)

    def forward_soft(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        w_skip = weights[:, self.skip_index]
        out = self.skip(x) * w_skip.view(-1, 1, 1, 1) if bool((w_skip != 0).any()) else None
        s = 1.0 - w_skip
        if not bool((s != 0).any()):
            return out
        w = weights.clone()
        w[:, self.skip_index] = 0
        w = w / s.clamp_min(1e-12).unsqueeze(-1)  # the mix among the MBConv candidates
        usage = w @ self.uses  # [B, mid]
        hidden = torch.relu(self.expand_bn(F.conv2d(x, self.expand.weight * self.expand_mask)))
        mixed = None
        for dw, kernel_of in zip(self.depthwise, self.kernel_of):
            share = ((w * kernel_of) @ self.uses) / usage.clamp_min(1e-12)
            if bool((share != 0).any()):
                share = share[:, :, None, None]
                mixed = (dw(hidden) * share if mixed is None else
                         torch.addcmul(mixed, dw(hidden), share))
        z = torch.relu(self.depthwise_bn(mixed)) * usage[:, :, None, None]
        y = self.project_bn(F.conv2d(z, self.project.weight * self.project_mask))
        y = y * s.view(-1, 1, 1, 1)
        out = y if out is None else out + y
        return out.contiguous(memory_format=torch.channels_last)

    def forward_single(self, x: torch.Tensor, k: int) -> torch.Tensor:
        weights = torch.zeros(len(x), NUM_CANDIDATES, device=x.device)
        weights[:, k] = 1.0  # one-hot: exactly candidate k's sub-network runs
        return self.forward_soft(x, weights)


class SuperNet(nn.Module):
    def __init__(self, space: SpaceConfig, mode: str = "sampled", paths: int = 2,
                 boundary: str = DEFAULT_BOUNDARY):
        super().__init__()
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if boundary not in BOUNDARIES:
            raise UserError(f"unknown --boundary {boundary!r}; use one of "
                            f"{', '.join(BOUNDARIES)}")
        if not 2 <= paths <= NUM_CANDIDATES:
            raise UserError(f"--paths must be between 2 and {NUM_CANDIDATES}, got {paths} "
                            "(with one path theta gets no gradient)")
        self.space, self.mode, self.paths = space, mode, paths
        parts = fixed_parts(space)
        self.stem = build_workload_module(parts.stem)
        self.layers = nn.ModuleList(
            EntangledBoundary(shape) if (mode == "sampled" and boundary == "entangled"
                                         and not shape.is_residual)
            else MixedLayer(shape) for shape in space.layers())
        self.head = build_workload_module(parts.head)
        self.pool = build_workload_module(parts.pool)
        self.classifier = build_workload_module(parts.classifier)
        self.theta = nn.Parameter(torch.zeros(space.num_layers, NUM_CANDIDATES))
        FBNet._init_weights(self)  # same init as the final networks
        for layer in self.layers:  # see the module docstring: why the supernet needs it
            if isinstance(layer, MixedLayer):
                layer.zero_init_residuals()
        # sampled mode: the stage boundaries stay soft (module docstring)
        self.soft_layers = tuple(l for l, layer in enumerate(self.layers) if not layer.residual)
        _pointwise_convs_to_onednn(self)
        # NHWC: depthwise-conv backward is several times faster on CPU (and fine on GPU)
        self.to(memory_format=torch.channels_last)
        for module in self.modules():
            if isinstance(module, Nchw):
                module.to(memory_format=torch.contiguous_format)

    # --- parameters --------------------------------------------------------------------------
    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "theta"]

    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.theta.detach().float(), dim=-1)

    def argmax_candidates(self) -> tuple[str, ...]:
        return tuple(CANDIDATE_NAMES[i] for i in self.theta.detach().argmax(-1).tolist())

    # --- masks -------------------------------------------------------------------------------
    def draw_masks(self, batch: int, tau: float, example_gen: torch.Generator | None,
                   step_gen: torch.Generator | None, theta_grad: bool = True,
                   relaxed: bool = False, uniform_paths: bool = False) -> Masks:
        """Per-example masks. `step_gen` must be seeded identically on every rank (it picks the
        sampled-mode candidate set); `example_gen` differs per rank (per-example draws).
        `relaxed` draws soft-mode masks in either mode (every candidate runs, mixed).
        `uniform_paths` draws the residual layers' candidates uniformly instead of from
        P_theta (the stage boundaries still mix by theta): weight steps that train every
        candidate alike, whatever theta currently prefers."""
        tau = max(tau, TAU_FLOOR)
        theta = self.theta if theta_grad else self.theta.detach()
        device = theta.device
        g = gumbel_noise((batch, *theta.shape), example_gen, device)
        if self.mode == "soft" or relaxed:
            return Masks(torch.softmax((theta.unsqueeze(0) + g) / tau, dim=-1))
        logits = torch.zeros_like(theta) if uniform_paths else theta
        if self.paths < NUM_CANDIDATES:
            # Gumbel top-k = `paths` draws from P_theta without replacement, same on every rank.
            step_g = gumbel_noise(theta.shape, step_gen, device)
            chosen = (logits.detach() + step_g).topk(self.paths, dim=-1).indices
            allowed = torch.zeros_like(theta, dtype=torch.bool).scatter_(-1, chosen, True)
            logits = logits.masked_fill(~allowed, float("-inf"))
        soft = torch.softmax((logits.unsqueeze(0) + g) / tau, dim=-1)
        choice = soft.detach().argmax(-1)
        hard = torch.zeros_like(soft).scatter_(-1, choice.unsqueeze(-1), 1.0)
        weights = hard - soft.detach() + soft
        if self.soft_layers:
            idx = list(self.soft_layers)
            weights = weights.clone()
            weights[:, idx] = torch.softmax((theta[idx].unsqueeze(0) + g[:, idx]) / tau, dim=-1)
            choice[:, idx] = -1
        return Masks(weights, choice, self.soft_layers)

    def fixed_masks(self, batch: int, candidates: list[int]) -> Masks:
        """Hard masks that select one architecture for the whole batch (evaluation)."""
        choice = torch.tensor(candidates, device=self.theta.device).expand(batch, -1)
        weights = torch.zeros(batch, len(candidates), NUM_CANDIDATES, device=self.theta.device)
        return Masks(weights.scatter_(-1, choice.unsqueeze(-1), 1.0), choice.contiguous())

    # --- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, masks: Masks) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for l, layer in enumerate(self.layers):
            if masks.choice is None or l in masks.soft_layers:
                x = layer.forward_soft(x, masks.weights[:, l])
            else:
                x = layer.forward_sampled(x, masks.weights[:, l], masks.choice[:, l])
        return self.classifier(self.pool(self.head(x)))

    def forward_eval(self, x: torch.Tensor, candidates: list[int]) -> torch.Tensor:
        """The architecture `candidates` as this supernet was trained to run it: in sampled mode
        the stage boundaries mix their candidates by P_theta (no single boundary block ever fed
        the next layer in training, so alone it would score at chance)."""
        if self.mode == "soft" or not self.soft_layers:
            return self.forward_arch(x, candidates)
        probs = self.probabilities().to(x.device)
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for l, (layer, k) in enumerate(zip(self.layers, candidates)):
            if l in self.soft_layers:
                x = layer.forward_soft(x, probs[l].expand(len(x), -1))
            else:
                x = layer.forward_single(x, k)
        return self.classifier(self.pool(self.head(x)))

    def forward_arch(self, x: torch.Tensor, candidates: list[int]) -> torch.Tensor:
        """One architecture of the space with the supernet's shared weights."""
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for layer, k in zip(self.layers, candidates):
            x = layer.forward_single(x, k)
        return self.classifier(self.pool(self.head(x)))


@contextmanager
def recalibrated_bn(model: SuperNet, candidates: list[int], batches) -> Iterator[None]:
    """Inside the block, the BatchNorm statistics are those of the architecture `candidates`
    alone, re-estimated on `batches` (images only); outside it, the supernet's own.

    The supernet's running statistics average over every path it trained (at the stage
    boundaries over the mix of all 9 candidates), so one architecture scored with them is far
    off: at chance where its batch statistics give 68% (Fashion-MNIST, after one search epoch).
    Re-estimating them for the sub-network is the standard one-shot NAS remedy (SPOS, OFA)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(),
              m.momentum) for m in norms]
    was_training = model.training
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches
        model.train()
        with torch.no_grad():
            for x in batches:
                model.forward_arch(x, candidates)
        model.eval()
        yield
    finally:
        for m, (mean, var, count, momentum) in zip(norms, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum
        model.train(was_training)


def theta_entropy(theta: torch.Tensor) -> float:
    """Mean over layers of the entropy of P_theta, in nats (log 9 = 2.197 is uniform)."""
    logp = torch.log_softmax(theta.detach().float(), dim=-1)
    return float(-(logp.exp() * logp).sum(-1).mean())
