"""DCT-VAE's prior over its quantised context: a discrete-time diffusion model
(docs/specs/hierarchical.md#32-dct-vae-prior-discrete-time-diffusion; Ho et al. 2020; the authors'
model/ddgm.py, class DiffusionPrior).

Forward process on u (values on the 2^b bin centres in [-1, 1]), steps i = 0 ... T-1:
x_i = sqrt(abar_i) u + sqrt(1 - abar_i) eps, abar_i = prod_{j <= i} (1 - beta_j). The reverse
model p(x_{i-1} | x_i) = N(mean, diag exp(log_var)) takes both from a network, ``net(x_i, i) ->
[B, 2C, ...]`` (the authors' parametrization "x": the mean is output directly). The bound:

    -log p(u) <= L_T + sum_{i=1}^{T-1} KL(q(x_{i-1} | x_i, u) || p(x_{i-1} | x_i)) - log p(u | x_0)

with L_T = KL(q(x_{T-1} | u) || N(0, I)) and the last term a Gaussian discretised over the 2^b
bins (exact normal CDFs; the first and last bin take the tails), so the bound is a bound on a
proper discrete log-probability. Training draws one step per example and scales its term by T;
``nll_bound(u, "full")`` sums every term (validation); ``test_log_prob`` is the log-mean-exp of
several full bounds (10 in the paper).

Deviations from the authors' code (documented switches): their discretised Gaussian uses bins of
half-width 1/(2^b - 1) around centres 2^b apart (the bins overlap, so its "probabilities" sum to
more than one and the bound can fall below the data's entropy; ``authors_bins=True``), with a tanh
approximation of the normal CDF; and their bound leaves out L_T (``prior_term=False``), a
constant in the parameters that a log-likelihood must still count.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.special import log_ndtr

SCHEDULES = ("linear", "cosine")


def beta_schedule(name: str, steps: int) -> Tensor:
    """The authors' schedules (float64): "linear" from 1/T to 2/T for T < 21 (0.143 ... 0.286 at
    T = 7), else from 1e-4 * 1000/T to 0.02 * 1000/T (Ho et al.); "cosine" (Nichol & Dhariwal,
    s = 0.008, each beta at most 0.999)."""
    if name == "linear":
        scale, start = (100 / steps, 0.01) if steps < 21 else (1000 / steps, 0.001)
        return torch.linspace(scale * start, scale * 0.02, steps, dtype=torch.float64)
    if name == "cosine":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = [min(1 - f((i + 1) / steps) / f(i / steps), 0.999) for i in range(steps)]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"diffusion schedule must be one of {list(SCHEDULES)}, got {name!r}")


def normal_log_prob(x: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log N(x; mean, e^log_var) summed over all but the first dim [B]."""
    lp = -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * torch.exp(-log_var))
    return lp.flatten(1).sum(1)


def gaussian_kl(mu_q: Tensor, log_var_q: Tensor, mu_p: Tensor, log_var_p: Tensor) -> Tensor:
    """KL(N(mu_q, e^log_var_q) || N(mu_p, e^log_var_p)) elementwise."""
    return 0.5 * (log_var_p - log_var_q - 1 + (log_var_q.exp() + (mu_q - mu_p) ** 2)
                  / log_var_p.exp())  # fmt: skip


def log_normal_mass(upper: Tensor, lower: Tensor) -> Tensor:
    """log(Phi(upper) - Phi(lower)) for upper > lower, stable in both tails (in the upper tail
    it is computed as Phi(-lower) - Phi(-upper))."""
    flip = lower > 0
    hi, lo = torch.where(flip, -lower, upper), torch.where(flip, -upper, lower)
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


def discretised_gaussian_log_prob(
    u: Tensor, mean: Tensor, log_var: Tensor, bits: int, authors_bins: bool = False
) -> Tensor:
    """log P(u) elementwise, u on the 2^b bin centres (2 i + 1) / 2^b - 1 of [-1, 1], under
    N(mean, e^log_var) integrated over u's bin; the first and last bins take the tails.
    ``authors_bins``: the authors' half-width 1/(2^b - 1) and edge tests (overlapping bins)."""
    half = 1 / (2**bits - 1) if authors_bins else 1 / 2**bits
    inv_std = torch.exp(-0.5 * log_var)
    upper, lower = (u - mean + half) * inv_std, (u - mean - half) * inv_std
    edge = 1 / (2**bits - 1) if authors_bins else 1 / 2**bits
    first, last = u <= -1 + edge, u >= 1 - edge
    inner = log_normal_mass(upper, lower)
    return torch.where(first, log_ndtr(upper), torch.where(last, log_ndtr(-lower), inner))


class DiscreteDiffusionPrior(nn.Module):
    """log p(u) bounds and samples of the diffusion prior over u [B, C, k, k] (module docstring)."""

    def __init__(
        self, net: nn.Module, steps: int, schedule: str, bits: int,
        prior_term: bool = True, authors_bins: bool = False,
    ):  # fmt: skip
        super().__init__()
        if not 1 <= steps <= 10_000:
            raise ValueError(f"diffusion steps T must be in [1, 10000], got {steps}")
        if not 1 <= bits <= 16:
            raise ValueError(f"context bits must be in [1, 16], got {bits}")
        self.net, self.steps, self.bits = net, steps, bits
        self.prior_term, self.authors_bins = prior_term, authors_bins
        betas = beta_schedule(schedule, steps)
        abar = torch.cumprod(1 - betas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        post_var = betas * (1 - abar_prev) / (1 - abar)
        buffers = {
            "betas": betas,
            "sqrt_abar": abar.sqrt(),
            "sqrt_one_minus_abar": (1 - abar).sqrt(),
            # q(x_{i-1} | x_i, u) = N(c1 u + c2 x_i, post_var); the first step's variance is 0,
            # so its log is clipped to the next step's (only i >= 1 is ever used)
            "post_c1": betas * abar_prev.sqrt() / (1 - abar),
            "post_c2": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar),
            "post_log_var": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float(), persistent=False)

    def _at(self, name: str, i: Tensor, like: Tensor) -> Tensor:
        return getattr(self, name)[i].view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, u: Tensor, i: Tensor) -> Tensor:
        noise = torch.randn_like(u)
        return self._at("sqrt_abar", i, u) * u + self._at("sqrt_one_minus_abar", i, u) * noise

    def p_params(self, x: Tensor, i: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_var = self.net(x, i).chunk(2, dim=1)
        return mean, log_var

    def term(self, u: Tensor, i: Tensor) -> Tensor:
        """The bound's term of step i per example [B] (i = 0: -log p(u | x_0), else the KL)."""
        x = self.q_sample(u, i)
        mean, log_var = self.p_params(x, i)
        rec = -discretised_gaussian_log_prob(u, mean, log_var, self.bits, self.authors_bins)
        q_mean = self._at("post_c1", i, u) * u + self._at("post_c2", i, u) * x
        kl = gaussian_kl(q_mean, self._at("post_log_var", i, u).expand_as(u), mean, log_var)
        first = (i == 0).view(-1, *([1] * (u.dim() - 1)))
        return torch.where(first, rec, kl).flatten(1).sum(1)

    def prior_kl(self, u: Tensor) -> Tensor:
        """L_T = KL(q(x_{T-1} | u) || N(0, I)) per example [B]."""
        last = torch.full((u.shape[0],), self.steps - 1, device=u.device, dtype=torch.long)
        mean = self._at("sqrt_abar", last, u) * u
        log_var = 2 * torch.log(self._at("sqrt_one_minus_abar", last, u)).expand_as(u)
        zero = torch.zeros_like(u)
        return gaussian_kl(mean, log_var, zero, zero).flatten(1).sum(1)

    def nll_bound(self, u: Tensor, mode: str = "train") -> Tensor:
        """-log p(u) <= this, per example [B]: "train" one step per example (its term times T),
        "full" every step."""
        if mode == "train":
            i = torch.randint(0, self.steps, (u.shape[0],), device=u.device)
            bound = self.steps * self.term(u, i)
        elif mode == "full":
            b, device = u.shape[0], u.device
            bound = sum(self.term(u, torch.full((b,), i, device=device)) for i in range(self.steps))
        else:
            raise ValueError(f"mode must be 'train' or 'full', got {mode!r}")
        return bound + self.prior_kl(u) if self.prior_term else bound

    def log_weight(self, u: Tensor) -> Tensor:
        """log p(u, x) - log q(x | u) of one forward trajectory x_0 ... x_{T-1} ~ q(. | u) [B]:
        an importance weight, so E[exp(.)] = p(u) (the summed analytic KLs of ``nll_bound`` have
        the same mean but are no importance weight)."""
        b, betas = u.shape[0], self.betas
        log_q = log_p = u.new_zeros(b)
        prev, xs = u, []
        for step in range(self.steps):
            mean = (1 - betas[step]).sqrt() * prev
            x = mean + betas[step].sqrt() * torch.randn_like(u)
            log_q = log_q + normal_log_prob(x, mean, torch.log(betas[step]).expand_as(x))
            xs.append(x)
            prev = x
        zero = torch.zeros_like(u)
        log_p = normal_log_prob(xs[-1], zero, zero)
        for step in range(self.steps):
            mean, log_var = self.p_params(xs[step], torch.full((b,), step, device=u.device))
            if step == 0:
                rec = discretised_gaussian_log_prob(u, mean, log_var, self.bits, self.authors_bins)
                log_p = log_p + rec.flatten(1).sum(1)
            else:
                log_p = log_p + normal_log_prob(xs[step - 1], mean, log_var)
        return log_p - log_q

    def test_log_prob(self, u: Tensor, repeats: int = 10, estimator: str = "importance") -> Tensor:
        """log p(u) from ``repeats`` draws: "importance", the log-mean-exp of importance weights
        (a stochastic lower bound that tightens with repeats); "authors", the log-mean-exp of
        full bounds (the authors' test). A full bound is no importance weight, so the authors'
        estimate can exceed log p(u): on 4 coordinates of known entropy 4.57 nats, a prior
        trained as in tests/unit/test_ddpm.py scored 4.26 nats by it (below the entropy, which no
        model can), 4.65 by importance weights and 4.73 by its full bound (1,000 points)."""
        if estimator == "importance":
            draws = [self.log_weight(u) for _ in range(repeats)]
        elif estimator == "authors":
            draws = [-self.nll_bound(u, "full") for _ in range(repeats)]
        else:
            raise ValueError(f"estimator must be 'importance' or 'authors', got {estimator!r}")
        return torch.logsumexp(torch.stack(draws), 0) - math.log(repeats)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, ...], temperature: float = 1.0) -> Tensor:
        """Ancestral samples [n, *shape] from N(0, I) down the T steps, the last step's mean
        (not a draw), clamped to [-1, 1]; the caller quantises them as it does the data."""
        device = self.sqrt_abar.device
        x = torch.randn(n, *shape, device=device)
        for step in reversed(range(self.steps)):
            mean, log_var = self.p_params(x, torch.full((n,), step, device=device))
            noise = torch.randn_like(x) * math.sqrt(temperature) if step > 0 else 0.0
            x = mean + torch.exp(0.5 * log_var) * noise
        return x.clamp(-1, 1)
