"""The DVP form of the Ladder VAE's backbone, the keys every DVP-VAE experiment config sets
(models.hierarchical.dvp_vae describes it). Plain values, no torch: sweeps/dvp_vae.py reads them
for its Ladder baseline cells, and its --help imports no torch."""

DVP_FORM = dict(
    latent_scales="4,4", scale_ch_mult=1.0, encoder="per_scale", enc_blocks=3,
    var_mode="log", logvar_min=-10.0, logvar_max=1.0, upsample="bilinear", init_state="ones",
    posterior_input="scaled", res_gate="one", pq_nets="residual", prior_mode="2x3",
    aggregate_latents=True, mix_coeffs=True, mix_scale="log",
)  # fmt: skip
"""The backbone keys of every DVP-VAE experiment config (their MNIST sizes)."""
