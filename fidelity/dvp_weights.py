"""The DVP-VAE authors' initial weights in our model: their LADDER_VAE / CTX_LADDER_VAE's
parameters paired, module by module, with our ``ladder`` / ``dvp_vae``'s (copy_into_ours), and the
gradients' relative gap between the two (gradient_gap). Used by the DVP-VAE adapter's
same-function check (fidelity/dvp_vae.py's same_weights_gap); "module doc" below is that
adapter's module docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The modules holding trainable parameters of their own, in registration order; our blocks'
    ``last`` alias (registered before the ``net`` that holds it) counted where ``net`` has it."""
    seen, found = set(), []
    for name, m in module.named_modules(remove_duplicate=False):
        if name.rsplit(".", 1)[-1] == "last" or id(m) in seen:
            continue
        if any(p.requires_grad for p in m.parameters(recurse=False)):
            seen.add(id(m))
            found.append(m)
    return found


def _pairs(net: nn.Module, ours: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(their module, our module) for every parameter-holding module of ours."""
    dec = net.decoder
    pairs = list(zip(_leaves(net.encoder), _leaves(ours.encoder), strict=True))
    blocks = [b for b in dec.decoder_blocks if hasattr(b, "s_to_q")]  # not their context block
    for block, layer in zip(blocks, ours.layers, strict=True):
        nets = [(block.s_to_p, layer.prior_net), (block.s_to_q, layer.posterior_net)]
        if layer.updates:  # our last layer has no z projection and state block (dvp_vae.py, 8)
            nets += [(block.z_up, layer.z_up), (block.resnet, layer.state)]
        for theirs, mine in nets:
            pairs += zip(_leaves(theirs), _leaves(mine), strict=True)
    pairs += [(dec.z_to_features, ours.out[0]), (dec.post_process[0], ours.out[-1])]
    if hasattr(ours, "prior"):
        pairs += zip(_leaves(dec.decoder_blocks[0].ctx_prior.model), _leaves(ours.prior.net),
                     strict=True)  # fmt: skip
    return pairs


def _parameter_pairs(net: nn.Module, ours: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """(their parameter, ours) for every trainable parameter of ours; ValueError on a shape."""
    pairs = []
    for theirs, mine in _pairs(net, ours):
        src = [p for p in theirs.parameters(False) if p.requires_grad]
        dst = [p for p in mine.parameters(False) if p.requires_grad]
        for a, b in zip(src, dst, strict=True):
            if a.shape != b.shape:
                raise ValueError(f"{type(theirs).__name__} {tuple(a.shape)} is not "
                                 f"{type(mine).__name__} {tuple(b.shape)}")  # fmt: skip
            pairs.append((a, b))
    if hasattr(ours, "q_logvar"):
        pairs.append((net.decoder.decoder_blocks[0].q_logvar, ours.q_logvar))
    total = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    if sum(b.numel() for _, b in pairs) != total:
        raise ValueError(f"{sum(b.numel() for _, b in pairs)} of our {total} parameters paired")
    return pairs


@torch.no_grad()
def copy_into_ours(net: nn.Module, ours: nn.Module) -> None:
    """Their weights into our model, module by module; every parameter of ours is written."""
    for a, b in _parameter_pairs(net, ours):
        b.copy_(a)


def gradient_gap(net: nn.Module, ours: nn.Module) -> float:
    """||g ours - g theirs|| / ||g theirs|| over every copied parameter."""

    def flat(p: Tensor) -> Tensor:
        return (torch.zeros_like(p) if p.grad is None else p.grad).flatten()

    pairs = _parameter_pairs(net, ours)
    theirs, mine = (torch.cat([flat(p) for p in side]) for side in zip(*pairs, strict=True))
    return ((mine - theirs).norm() / theirs.norm()).item()
