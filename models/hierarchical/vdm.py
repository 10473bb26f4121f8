"""DVP-VAE's prior over its context: a continuous-time variational diffusion model
(docs/specs/hierarchical.md#33-dvp-vae-prior-continuous-time-diffusion; Kingma et al. 2021; the
DVP-VAE authors' model/ddgm.py, ``cont_time``).

Noise schedule gamma(t) = gamma_min + (gamma_max - gamma_min) t on t in [0, 1], fixed;
alpha_t^2 = sigmoid(-gamma(t)), sigma_t^2 = sigmoid(gamma(t)), z_t = alpha_t u + sigma_t eps.
A network predicts the noise, ``net(z_t, t) -> eps_hat`` (t in [0, 1] is what its step embedding
sees, as in the authors' code). The bound, per example and summed over u's dimensions:

    -log p(u) <= L_T + L_0 + L_inf
    L_T   = KL(q(z_1 | u) || N(0, I))
    L_0   = -log N(u; z_0 / alpha_0, e^gamma_min),  z_0 ~ q(z_0 | u)
    L_inf = 1/2 E_{t ~ U(0, 1), eps} [gamma'(t) ||eps - eps_hat(z_t, t)||^2]

``nll_bound(u, "random")`` takes one t per example (training and validation, as the authors);
``nll_bound(u, "grid")`` averages the integrand over T stratified points, t_i uniform in
((i - 1)/T, i/T] (test): the same expectation, with less variance. ``"authors_grid"`` takes the
authors' points t_i = i/T, a right Riemann sum: it leaves out (0, 1/T], where the integrand is
largest (small-noise data tells least about its noise), so it is biased low and no bound
(tests/unit/test_vdm.py: 0.40 nats against an entropy of 0.86 on a 4-dimensional Gaussian, T = 25).
``sample`` runs T ancestral steps of the model's reverse process q(z_s | z_t, u = u_hat), u_hat
clamped to [-1, 1], then draws u from p(u | z_0).

Deviations (docs/specs/hierarchical.md#10-deviations-from-the-authors-code): the test grid
(DVPVAEConfig.test_grid); the authors' sampler returns z_0 itself, ours draws
u ~ p(u | z_0) = N(z_0 / alpha_0, e^gamma_min), the distribution L_0 scores (at gamma_min = -6
they differ by a factor alpha_0 = 0.9988 and noise of std 0.05).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.hierarchical.ddpm import normal_log_prob

MODES = ("random", "grid", "authors_grid")


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


class ContinuousDiffusionPrior(nn.Module):
    def __init__(self, net: nn.Module, gamma_min: float, gamma_max: float, steps: int):
        super().__init__()
        if not gamma_min < gamma_max:
            raise ValueError(f"gamma_min {gamma_min} must be below gamma_max {gamma_max} (the "
                             "paper: -6 and 7 on MNIST)")  # fmt: skip
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"diffusion_steps T must be an int >= 1, got {steps!r}")
        self.net, self.gamma_min, self.gamma_max, self.steps = net, gamma_min, gamma_max, steps

    def gamma(self, t: Tensor) -> Tensor:
        return self.gamma_min + (self.gamma_max - self.gamma_min) * t

    @staticmethod
    def _expand(v: Tensor, like: Tensor) -> Tensor:
        return v.view(-1, *([1] * (like.dim() - 1)))

    def diffusion_loss(self, u: Tensor, t: Tensor) -> Tensor:
        """1/2 gamma' ||eps - eps_hat(z_t, t)||^2 at one t per example [B]."""
        g = self._expand(self.gamma(t), u)
        eps = torch.randn_like(u)
        z_t = torch.sqrt(torch.sigmoid(-g)) * u + torch.sqrt(torch.sigmoid(g)) * eps
        eps_hat = self.net(z_t, t)
        return 0.5 * (self.gamma_max - self.gamma_min) * (eps - eps_hat).square().flatten(1).sum(1)

    def nll_bound(self, u: Tensor, mode: str = "random") -> Tensor:
        """The bound on -log p(u) per example [B] (module docstring)."""
        if mode not in MODES:
            raise ValueError(f"diffusion bound mode must be one of {list(MODES)}, got {mode!r}")
        b = u.shape[0]
        a1_sq, s1_sq = sigmoid(-self.gamma_max), sigmoid(self.gamma_max)
        prior_term = 0.5 * (a1_sq * u.square() + s1_sq - math.log(s1_sq) - 1).flatten(1).sum(1)
        a0, s0 = math.sqrt(sigmoid(-self.gamma_min)), math.sqrt(sigmoid(self.gamma_min))
        z0 = a0 * u + s0 * torch.randn_like(u)
        log_var0 = torch.full_like(u, self.gamma_min)
        reconstruction = -normal_log_prob(u, z0 / a0, log_var0)
        if mode == "random":
            diffusion = self.diffusion_loss(u, torch.rand(b, device=u.device, dtype=u.dtype))
        else:
            ends = torch.arange(1, self.steps + 1, device=u.device, dtype=u.dtype)
            terms = []
            for end in ends:
                offset = 0 if mode == "authors_grid" else torch.rand(b, device=u.device)
                terms.append(self.diffusion_loss(u, (end - offset).expand(b) / self.steps))
            diffusion = torch.stack(terms).mean(0)
        return prior_term + reconstruction + diffusion

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, ...], device=None) -> Tensor:
        """n draws of u [n, *shape] by T ancestral steps (module docstring)."""
        device = device or next(self.net.parameters()).device
        z = torch.randn(n, *shape, device=device)
        for i in range(self.steps, 0, -1):
            t = torch.full((n,), i / self.steps, device=device)
            g_t, g_s = self.gamma(t), self.gamma(t - 1 / self.steps)
            a_t, a_s = torch.sigmoid(-g_t).sqrt(), torch.sigmoid(-g_s).sqrt()
            var_t, var_s = torch.sigmoid(g_t), torch.sigmoid(g_s)
            u_hat = ((z - self._expand(var_t.sqrt(), z) * self.net(z, t))
                     / self._expand(a_t, z)).clamp(-1, 1)  # fmt: skip
            a_ts = a_t / a_s
            var_ts = var_t - a_ts.square() * var_s  # the variance of q(z_t | z_s)
            mean = (self._expand(a_ts * var_s / var_t, z) * z
                    + self._expand(a_s * var_ts / var_t, z) * u_hat)  # fmt: skip
            z = mean + self._expand((var_ts * var_s / var_t).sqrt(), z) * torch.randn_like(z)
        a0 = math.sqrt(sigmoid(-self.gamma_min))
        return z / a0 + math.exp(0.5 * self.gamma_min) * torch.randn_like(z)
