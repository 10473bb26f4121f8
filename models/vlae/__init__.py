"""Park et al. (ICML 2019), docs/specs/vlae.md: VLAE and the baselines of its tables that are not
the plain VAE (SA-VAE; VAE with Householder or IAF flows). The MLP VAE they extend is
``models.vae``."""
