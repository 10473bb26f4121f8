"""The configuration of the Ladder VAE (models.hierarchical.ladder, whose docstring describes
the backbone these keys build): ``LadderConfig``, model/ keys of the families ``ladder``,
``dct_vae`` and ``dvp_vae``, and the choices it checks its string keys against.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.fields import check_choice, check_positive_int, parse_int_list
from models.hierarchical.blocks import ACTIVATIONS, GATES
from models.hierarchical.outputs import LIKELIHOODS
from models.likelihoods import SCALES

ENCODERS = ("per_latent", "per_scale")
VAR_MODES = ("softplus", "log")
UPSAMPLING = ("nearest", "bilinear")
IWAE_WEIGHTS = ("sampled", "authors")
INIT_STATES = ("zeros", "ones")
POSTERIOR_INPUTS = ("sum", "scaled")
PQ_NETS = ("plain", "residual")
PRIOR_MODES = ("1x5", "2x3")


@dataclass(frozen=True)
class LadderConfig:
    latent_scales: str = "4,4"
    """Latent layers per scale, bottom-up, comma-separated; 0 = an empty scale (DCT-VAE CIFAR:
    "10,10,5,3,0,1"). The top scale needs at least one."""
    latent_width: int = 1
    """Channels of every latent layer (MNIST 1; DCT-VAE CIFAR 8, DVP-VAE CIFAR 3)."""
    num_ch: int = 32
    scale_ch_mult: float = 1.25
    """Channels grow by this factor per scale, bottom-up."""
    block_ch_mult: float = 1.0
    """Hidden channels of every residual block = its input channels x this."""
    encoder: str = "per_latent"
    enc_blocks: int = 1
    """Encoder residual blocks per latent ("per_latent") or per scale ("per_scale")."""
    dec_blocks: int = 1
    """Residual blocks of each layer's state update."""
    post_blocks: int = 0
    """Residual blocks between the last state and the likelihood's 3x3 conv (0 in every
    experiment; the last one's final conv is zero-initialised)."""
    start_scale_at_x: bool = False
    """The bottom scale at the image resolution (CIFAR) instead of half of it."""
    condition_on_last: bool = False
    """At every scale change add the top latent, upsampled and through a 1x1 conv, to the state
    (the authors' CIFAR ladder); DCT-VAE adds its context image instead."""
    activation: str = "silu"
    batch_norm: bool = False
    weight_norm: bool = False
    """Weight normalisation of the encoder's and decoder's inner convs (DCT-VAE CIFAR)."""
    var_mode: str = "softplus"
    softplus_beta: float = 0.7
    logvar_min: float = -5.0
    logvar_max: float = 0.0
    upsample: str = "nearest"
    """How the state is upsampled between scales: nearest (DCT-VAE) or bilinear (DVP-VAE)."""
    likelihood: str = "bernoulli"
    """bernoulli (binarised data) or logistic_mixture (8-bit pixels)."""
    num_mix: int = 10
    mix_coeffs: bool = False
    """RGB autoregressive mean coefficients of the mixture (DVP-VAE; DCT-VAE has none)."""
    mix_scale: str = "softplus"
    """The mixture's scale: softplus (DCT-VAE, beta 0.4) or log (DVP-VAE, clamped [-8, 1])."""
    input_mean: float = 127.5
    input_std: float = 127.5
    """The encoder sees (255 x - input_mean) / input_std: [-1, 1] by default; CIFAR-10's
    authors' standardisation is 120.63838 / 64.16736."""
    iwae_weights: str = "sampled"
    """log_likelihood's weights: "sampled" log-densities (IWAE) or "authors" (analytic KLs)."""
    # --- where the two code bases differ (DCT-VAE's value first, DVP-VAE's second) ---
    init_state: str = "zeros"
    """The decoder's initial state: a fixed zero tensor (DCT-VAE) or constant ones (DVP-VAE)."""
    posterior_input: str = "sum"
    """q's net reads s_enc + s ("sum", DCT-VAE) or (s_enc + s) / sqrt(2) ("scaled", DVP-VAE)."""
    res_gate: str = "learned"
    """Residual gates: a learned scalar from 0 (DCT-VAE) or fixed at 1 ("one", DVP-VAE)."""
    pq_nets: str = "plain"
    """The prior and posterior nets: "plain" blocks, the posterior's last conv uniform(-1, 1)
    (DCT-VAE), or "residual" blocks with a 1x1 skip, both last convs zero (DVP-VAE)."""
    prior_mode: str = "1x5"
    """The prior net's inner convs: one depthwise 5x5 (DCT-VAE) or two 3x3 (DVP-VAE)."""
    aggregate_latents: bool = False
    """DVP-VAE's output path: p(x|z) reads Conv1x1(sum_l Up_bilinear(z_l) / sqrt(L)), not the
    final state (every latent reaches the likelihood directly; the last state block is gone)."""

    def __post_init__(self):
        scales = parse_int_list("latent_scales", self.latent_scales, "4,4", minimum=0)
        if scales[-1] < 1:
            raise ValueError(f"latent_scales {self.latent_scales!r}: the top (last) scale needs "
                             "at least one latent layer, e.g. '4,4'")  # fmt: skip
        for name in ("latent_width", "num_ch", "enc_blocks", "dec_blocks", "num_mix"):
            check_positive_int(name, getattr(self, name), "a layer size")
        if self.post_blocks < 0:
            raise ValueError(f"post_blocks must be >= 0, got {self.post_blocks}")
        for name, value, choices in (
            ("encoder", self.encoder, ENCODERS), ("activation", self.activation, ACTIVATIONS),
            ("var_mode", self.var_mode, VAR_MODES), ("upsample", self.upsample, UPSAMPLING),
            ("likelihood", self.likelihood, LIKELIHOODS), ("mix_scale", self.mix_scale, SCALES),
            ("iwae_weights", self.iwae_weights, IWAE_WEIGHTS),
            ("init_state", self.init_state, INIT_STATES), ("res_gate", self.res_gate, GATES),
            ("posterior_input", self.posterior_input, POSTERIOR_INPUTS),
            ("pq_nets", self.pq_nets, PQ_NETS), ("prior_mode", self.prior_mode, PRIOR_MODES),
        ):  # fmt: skip
            check_choice(name, value, tuple(choices), "see models/hierarchical/ladder_config.py")
        if self.scale_ch_mult <= 0 or self.block_ch_mult <= 0 or self.softplus_beta <= 0:
            raise ValueError("scale_ch_mult, block_ch_mult and softplus_beta must be > 0")
        if not self.logvar_min < self.logvar_max:
            raise ValueError(f"logvar_min {self.logvar_min} must be below logvar_max "
                             f"{self.logvar_max}")  # fmt: skip
        if self.input_std <= 0:
            raise ValueError(f"input_std must be > 0, got {self.input_std}")
