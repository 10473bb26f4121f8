"""DCT-VAE (Kuzina & Tomczak, arXiv 2302.09976; docs/specs/hierarchical.md, sections 3.1, 3.2, 3.4):
the Ladder VAE with a deterministic context u on top, u = the b-bit quantised, normalised top-left
k x k DCT-II coefficients of x, and a discrete-time diffusion prior over u.

    q(u | x) = delta(u(x)),  p(x, z, u) = p(x | z, u) prod_l p(z_l | z_>l, u) p_DDPM(u)
    ELBO = E_q[log p(x | z, u)] - sum_l KL_l + log p_DDPM(u)   (the last by its bound)

u reaches the decoder in image space (models.hierarchical.dct.DCTContext.to_image): average-pooled
to the top resolution and through a 3x3 conv, added to the initial state; with
``condition_on_last`` the same at every scale change (MNIST, CIFAR, SVHN; not OMNIGLOT). The
diffusion prior's -log p(u) bound is one step per example in training (times T), all T steps in
validation (models.hierarchical.ddpm); ``log_likelihood`` adds log p(u) estimated once per image
from ``test_repeats`` draws.

Deviations (docs/specs/hierarchical.md#10-deviations-from-the-authors-code): u is computed from the
image the model is given, i.e. from the binarised image under dynamic binarisation; the authors
compute it from the grey levels in their data loader (information the binarised likelihood does not
model). log p(u) is estimated once per test image and shared by the k importance samples, not
re-estimated inside each of them: the same estimator in expectation, k times cheaper. The authors'
unused ``y_block`` conv is not built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.fields import check_choice, check_positive_int, parse_int_list
from models.hierarchical.dct import DCTContext, check_ctx_size, quantise
from models.hierarchical.ddpm import SCHEDULES, DiscreteDiffusionPrior
from models.hierarchical.ladder import Context, LadderConfig, LadderVAE
from models.hierarchical.unet import UNet

ESTIMATORS = ("importance", "authors")


@dataclass(frozen=True)
class DCTVAEConfig(LadderConfig):
    latent_scales: str = "4,3"
    scale_ch_mult: float = 1.0
    ctx_size: int = 7
    """k: the k x k DCT coefficients kept per channel (MNIST 7, OMNIGLOT 8, CIFAR/SVHN 6)."""
    ctx_bits: int = 2
    """b: the context's quantisation, 2^b levels (MNIST/OMNIGLOT 2, CIFAR/SVHN 5)."""
    condition_on_last: bool = True
    """Add the context image (average-pooled, 3x3 conv) at every scale change too."""
    diffusion_steps: int = 7
    """T (MNIST/OMNIGLOT 7 with the linear schedule; CIFAR/SVHN 40, cosine)."""
    diffusion_schedule: str = "linear"
    unet_channels: int = 32
    unet_blocks: int = 3
    unet_mult: str = "1"
    unet_dropout: float = 0.1
    unet_heads: int = 2
    test_repeats: int = 10
    """Draws of log p(u)'s test estimate (the paper's 10)."""
    ddpm_estimator: str = "importance"
    """How they combine: "importance" weights, or the authors' log-mean-exp of full bounds
    (which can exceed log p(u); models.hierarchical.ddpm.DiscreteDiffusionPrior.test_log_prob)."""
    authors_bins: bool = False
    """The authors' overlapping discretised-Gaussian bins (ddpm module docstring)."""
    prior_term: bool = True
    """Count L_T = KL(q(u_T | u) || N(0, I)) in the bound (the authors leave it out)."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("ctx_size", self.ctx_size, "the DCT block's side")
        if not (isinstance(self.ctx_bits, int) and 1 <= self.ctx_bits <= 16):
            raise ValueError(f"ctx_bits must be an int in [1, 16] (2^b context levels; the paper "
                             f"uses 2 or 5), got {self.ctx_bits!r}")  # fmt: skip
        if not (isinstance(self.diffusion_steps, int) and 1 <= self.diffusion_steps <= 10_000):
            raise ValueError(f"diffusion_steps T must be an int in [1, 10000] (the paper: 7 or "
                             f"40), got {self.diffusion_steps!r}")  # fmt: skip
        check_choice("diffusion_schedule", self.diffusion_schedule, SCHEDULES, "beta schedule")
        check_choice("ddpm_estimator", self.ddpm_estimator, ESTIMATORS, "test log p(u)")
        for name in ("unet_channels", "unet_blocks", "unet_heads", "test_repeats"):
            check_positive_int(name, getattr(self, name), "a size or count")
        parse_int_list("unet_mult", self.unet_mult, "1,1")
        if not 0.0 <= self.unet_dropout < 1.0:
            raise ValueError(f"unet_dropout must be in [0, 1), got {self.unet_dropout}")


class DCTVAE(LadderVAE):
    """The DCT-VAE family ("dct_vae")."""

    Config = DCTVAEConfig

    def __init__(self, cfg: DCTVAEConfig, x_shape: tuple[int, ...]):
        channels = x_shape[0]
        check_ctx_size(cfg.ctx_size, x_shape)
        super().__init__(cfg, x_shape)
        self.context = DCTContext(x_shape, cfg.ctx_size, "backward", cfg.ctx_bits, dither=True)
        mult = parse_int_list("unet_mult", cfg.unet_mult, "1,1")
        net = UNet(channels, 2 * channels, cfg.unet_channels, cfg.unet_blocks, mult,
                   cfg.unet_dropout, cfg.unet_heads)  # fmt: skip
        self.prior = DiscreteDiffusionPrior(
            net, cfg.diffusion_steps, cfg.diffusion_schedule, cfg.ctx_bits, cfg.prior_term,
            cfg.authors_bins,
        )  # fmt: skip
        self.ctx_in = self.conditioning(self.s_top.shape[1], self.s_top.shape[-1])

    def conditioning(self, c_out: int, size: int) -> nn.Sequential:
        """The context image to a state of c_out channels (average pooling, then a 3x3 conv)."""
        pool = self.x_shape[-1] // size
        return nn.Sequential(nn.AvgPool2d(pool), nn.Conv2d(self.x_shape[0], c_out, 3, padding=1))

    def initialise(self, x_train: Tensor) -> None:
        """The DCT coefficients' scales from the training images."""
        self.context.initialise(x_train)

    def top(self, s: Tensor, x: Tensor | None, n: int, terms: bool) -> tuple[Tensor, Context]:
        if x is None:  # a draw from the diffusion prior, onto the same 2^b bin centres
            shape = (self.x_shape[0], self.cfg.ctx_size, self.cfg.ctx_size)
            u = quantise(self.prior.sample(n, shape), self.cfg.ctx_bits)
        else:
            u = self.context(x)
        image = self.context.to_image(u)
        context = Context(u=u, condition=image)
        if terms:
            context.nll_bound = self.prior.nll_bound(u, "train" if self.training else "full")
        return s + self.ctx_in(image), context

    @torch.no_grad()
    def context_log_prob(self, x: Tensor) -> Tensor:
        u = self.context(x)
        return self.prior.test_log_prob(u, self.cfg.test_repeats, self.cfg.ddpm_estimator)
