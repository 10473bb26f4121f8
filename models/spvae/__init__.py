"""Tan & Peharz (ICML 2019), docs/specs/spvae.md: the region graph and sum-product network, the VAE
experts at its leaves, and SPVAE with its VAE / ConvVAE baselines."""
