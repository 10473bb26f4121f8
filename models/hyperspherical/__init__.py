"""Davidson et al. (2018, 2019), docs/specs/hyperspherical.md: the von Mises-Fisher and uniform
distributions on the sphere with their Bessel functions, and the S-VAE, product-space S-VAE and
Gaussian N-VAE families."""
