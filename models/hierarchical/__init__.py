"""The hierarchical VAEs of Kuzina & Tomczak (docs/specs/hierarchical.md): the top-down Ladder VAE
backbone, DCT-VAE's context and its diffusion prior, and the diffusion priors' UNet."""
