"""DVP-VAE, the hierarchical VAE with a diffusion-based VampPrior (Kuzina & Tomczak, TMLR 2024;
docs/specs/hierarchical.md, sections 1 (the DVP-VAE column), 3.1, 3.3, 3.4): the Ladder VAE
in its DVP form with a stochastic context u on top.

    q(u | x) = N(u; DCT_norm(x), diag sigma_u^2),  p(x, z, u) = p(x|z) prod_l p(z_l|z_>l, u) p(u)
    ELBO     = E_q[log p(x | z)] - sum_l KL(q(z_l | z_>l, x) || p(z_l | z_>l, u))
               - E_q[log q(u | x) - log p_VDM(u)]    (one sample of u; log p_VDM by its bound)

DCT_norm(x) is the orthonormal DCT-II's top-left k x k block per channel, divided by each
coefficient's scale from the training set (models.hierarchical.dct, no quantisation). sigma_u^2 is
learned per coefficient: log sigma_u^2 starts at gamma_min and is kept in [-12, -5] (projected
after every change, as the authors clamp it). u reaches every latent layer's prior net: its image
(zero-padded inverse DCT) is average-pooled to the layer's resolution and concatenated to the net's
input; it reaches q only through the state the prior net updates. p(u) is the continuous-time
diffusion model of models.hierarchical.vdm; training and validation draw one t per example, a
test pass (``log_likelihood``) averages T stratified points (``test_grid``). Each importance
sample of the test NLL draws its own u ~ q(u | x), so its weight is log p(x|z) + sum_l log
p(z_l)/q(z_l) + log p(u) - log q(u | x), with log p(u) by that T-point bound
(docs/specs/hierarchical.md#6-evaluation).

The backbone's DVP form (models.hierarchical.ladder, the defaults below): constant-ones initial
state, posterior nets on (s_enc + s) / sqrt(2), residual prior and posterior nets with 1x1 skips
and zero-initialised last convs, residual gates fixed at 1, "2x3" prior nets, bilinear upsampling,
log-variances clamped to [-10, 1], and the latent-aggregation output path. The Ladder baseline of
the DVP-VAE paper is the "ladder" family with the same keys (sweeps/dvp_vae.py).

Deviations (docs/specs/hierarchical.md#10-deviations-from-the-authors-code): u is computed from the
image the model is given (the binarised one under dynamic binarisation; the authors' loader uses the
grey levels). The active units leave u out, as its authors do. Not built, because nothing reads
them: the authors' last layer's z projection and state block under latent aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.fields import check_choice, check_positive_int, parse_int_list
from models.hierarchical.dct import DCTContext, check_ctx_size
from models.hierarchical.ddpm import normal_log_prob
from models.hierarchical.dvp_form import DVP_FORM
from models.hierarchical.ladder import Context, LadderConfig, LadderVAE
from models.hierarchical.unet import UNet
from models.hierarchical.vdm import ContinuousDiffusionPrior

TEST_GRIDS = {"stratified": "grid", "authors": "authors_grid"}
CTX_LOGVAR_RANGE = (-12.0, -5.0)
"""The authors' clamp of log sigma_u^2."""


@dataclass(frozen=True)
class DVPVAEConfig(LadderConfig):
    latent_scales: str = DVP_FORM["latent_scales"]
    scale_ch_mult: float = DVP_FORM["scale_ch_mult"]
    encoder: str = DVP_FORM["encoder"]
    enc_blocks: int = DVP_FORM["enc_blocks"]
    var_mode: str = DVP_FORM["var_mode"]
    logvar_min: float = DVP_FORM["logvar_min"]
    logvar_max: float = DVP_FORM["logvar_max"]
    upsample: str = DVP_FORM["upsample"]
    init_state: str = DVP_FORM["init_state"]
    posterior_input: str = DVP_FORM["posterior_input"]
    res_gate: str = DVP_FORM["res_gate"]
    pq_nets: str = DVP_FORM["pq_nets"]
    prior_mode: str = DVP_FORM["prior_mode"]
    aggregate_latents: bool = DVP_FORM["aggregate_latents"]
    mix_coeffs: bool = DVP_FORM["mix_coeffs"]
    mix_scale: str = DVP_FORM["mix_scale"]
    ctx_size: int = 7
    """k: the k x k DCT coefficients kept per channel (MNIST 7, OMNIGLOT 5, CIFAR-10 7)."""
    gamma_min: float = -6.0
    """The noise schedule's log-SNR range: gamma(t) from gamma_min to gamma_max (MNIST and
    OMNIGLOT [-6, 7], CIFAR-10 [-10, 7]); log sigma_u^2 also starts at gamma_min."""
    gamma_max: float = 7.0
    diffusion_steps: int = 25
    """T: sampling steps and the test grid's points (MNIST 25, OMNIGLOT 50, CIFAR-10 25)."""
    unet_channels: int = 16
    unet_blocks: int = 2
    unet_mult: str = "1"
    unet_dropout: float = 0.0
    unet_heads: int = 1
    test_grid: str = "stratified"
    """The test bound's T points in t: "stratified" (uniform within each 1/T, an unbiased
    estimate of the bound) or "authors" (t = i/T: biased low; models.hierarchical.vdm)."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("ctx_size", self.ctx_size, "the DCT block's side")
        if not self.gamma_min < self.gamma_max:
            raise ValueError(f"gamma_min {self.gamma_min} must be below gamma_max "
                             f"{self.gamma_max} (the paper: -6 and 7 on MNIST)")  # fmt: skip
        if not (isinstance(self.diffusion_steps, int) and 1 <= self.diffusion_steps <= 10_000):
            raise ValueError(f"diffusion_steps T must be an int in [1, 10000] (the paper: 25 or "
                             f"50), got {self.diffusion_steps!r}")  # fmt: skip
        for name in ("unet_channels", "unet_blocks", "unet_heads"):
            check_positive_int(name, getattr(self, name), "a size or count")
        parse_int_list("unet_mult", self.unet_mult, "1,1")
        check_choice("test_grid", self.test_grid, TEST_GRIDS, "the test bound's points")
        if not 0.0 <= self.unet_dropout < 1.0:
            raise ValueError(f"unet_dropout must be in [0, 1), got {self.unet_dropout}")


class DVPVAE(LadderVAE):
    """The DVP-VAE family ("dvp_vae")."""

    Config = DVPVAEConfig
    context_in_units = False  # the authors' active units leave the context out

    def __init__(self, cfg: DVPVAEConfig, x_shape: tuple[int, ...]):
        channels = x_shape[0]
        check_ctx_size(cfg.ctx_size, x_shape)
        super().__init__(cfg, x_shape)
        self.context = DCTContext(x_shape, cfg.ctx_size, "ortho", bits=None)
        self.ctx_shape = (channels, cfg.ctx_size, cfg.ctx_size)
        self.q_logvar = nn.Parameter(torch.full((1, *self.ctx_shape), float(cfg.gamma_min)))
        mult = parse_int_list("unet_mult", cfg.unet_mult, "1,1")
        net = UNet(channels, channels, cfg.unet_channels, cfg.unet_blocks, mult,
                   cfg.unet_dropout, cfg.unet_heads)  # fmt: skip
        self.prior = ContinuousDiffusionPrior(net, cfg.gamma_min, cfg.gamma_max,
                                              cfg.diffusion_steps)  # fmt: skip

    def prior_condition_channels(self) -> int:
        return self.x_shape[0]

    def initialise(self, x_train: Tensor) -> None:
        """The DCT coefficients' scales from (at most 50,000) training images."""
        self.context.initialise(x_train)

    def context_posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(u | x)'s mean [B, C, k, k] and log-variance (projected into its range first)."""
        with torch.no_grad():
            self.q_logvar.clamp_(*CTX_LOGVAR_RANGE)
        mean = self.context(x)
        return mean, self.q_logvar.expand_as(mean)

    def top(self, s: Tensor, x: Tensor | None, n: int, terms: bool) -> tuple[Tensor, Context]:
        if x is None:
            u = self.prior.sample(n, self.ctx_shape, s.device)
            context = Context(u=u)
        else:
            mean, log_var = self.context_posterior(x)
            u = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            context = Context(u=u, q_u=(mean, log_var))
            if terms:  # log q(u | x) - log p(u): one sample, log p by one t per example
                context.nll_bound = normal_log_prob(u, mean, log_var) + self.prior.nll_bound(u)
        context.image = self.context.to_image(u)
        return s, context

    def layer_condition(self, context: Context, s: Tensor) -> Tensor:
        """The context image average-pooled to the layer's resolution."""
        return F.avg_pool2d(context.image, self.x_shape[-1] // s.shape[-1])

    def context_log_weight(self, context: Context) -> Tensor:
        mean, log_var = context.q_u
        u = context.u
        bound = self.prior.nll_bound(u, TEST_GRIDS[self.cfg.test_grid])
        return -bound - normal_log_prob(u, mean, log_var)
