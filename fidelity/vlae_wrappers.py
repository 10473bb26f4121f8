"""The authors' trained VLAE-repository models behind our model contract (fidelity.vlae).

Each wrapper holds their trained ``nn.Module`` and computes q(z|x) with THEIR networks and
functions, exactly as their ``importance_sample`` does; our estimator (the same streaming IWAE as
models/base.py, savae.py, flows.py) then weighs the samples, so both sides are evaluated alike:

    vae      their encoder's N(mu, diag exp(logvar))
    savae    their T SVI steps from the encoder's (mu, logvar): their batch-mean loss times the
             batch size (= each example's own gradient, as their one-example importance sampling
             takes), their ``utils.clip_grad_norm``, their step ``lambda + svi_lr * grad``; needs
             gradients, so it runs under ``torch.enable_grad`` (as our SAVAE.refine does)
    vae_hf   their ``householderflow(h)`` matrix applied to z_0 ~ q_0; log q(z_T|x) = log q_0(z_0|x)
    vae_iaf  their ``iaf(z_0, h, log q_0)`` (their MADEs, masks and log-det bookkeeping)
    vlae     their encoder mean, T updates by their ``decoder(.., compute_jacobian=True)``,
             ``solve_mu`` and ``update_rate``, and their precision at mu_T: N(mu_T, Lambda^-1)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from fidelity.common import X_SHAPE, AuthorsModel, standard_normal
from models.base import DEFAULT_MAX_ROWS, streaming_iwae
from models.posteriors import PrecisionGaussian


def their_module(net: nn.Module, name: str):
    """One of the authors' modules as their models.py sees it (the driver imported them under
    their own names and then took them out of sys.modules again)."""
    return type(net).forward.__globals__[name]


def diagonal(mu: Tensor, logvar: Tensor) -> Independent:
    return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)


class AuthorsVAE(AuthorsModel):
    """The authors' trained encoder and decoder behind our model contract, so that our estimator
    (LatentVariableModel.log_likelihood) evaluates them exactly as it evaluates ours."""

    analytic_kl = False

    def posterior(self, x):
        q, _ = self.net.encoder(x.flatten(1))
        return diagonal(q.mu, q.logvar)

    def prior(self):
        return standard_normal(self.net.z_dim)

    def likelihood(self, z):
        p = self.net.decoder(z.reshape(-1, z.shape[-1]))
        mu = p.mu.reshape(*z.shape[:-1], *X_SHAPE)
        return Independent(Normal(mu, torch.exp(0.5 * p.logvar).expand_as(mu)), 3)


class AuthorsSAVAE(AuthorsVAE):
    """Their SVI refinement of (mu, logvar) per x (models.SAVAE.importance_sample)."""

    def posterior(self, x):
        net, x_flat = self.net, x.flatten(1)
        gaussian = their_module(net, "distribution").DiagonalGaussian
        clip = their_module(net, "utils").clip_grad_norm
        with torch.enable_grad():  # their steps differentiate the loss, also under no_grad
            q, _ = net.encoder(x_flat)
            mu, logvar = q.mu.detach(), q.logvar.detach()
            for _ in range(net.n_svi_step):
                mu, logvar = mu.requires_grad_(), logvar.requires_grad_()
                q = gaussian(mu, logvar)
                z = q.sample()
                # their loss is the batch mean; times B it is each example's own (batch-1) loss
                loss = net.loss(x_flat, z, net.decoder(z), net.prior, q) * x_flat.shape[0]
                g_mu, g_logvar = torch.autograd.grad(loss, (mu, logvar))
                mu = (mu + net.svi_lr * clip(g_mu, 5)).detach()  # their "gradient ascent"
                logvar = (logvar + net.svi_lr * clip(g_logvar, 5)).detach()
        return diagonal(mu, logvar)


class AuthorsFlow(AuthorsVAE):
    """Their HF or IAF flow on z_0 ~ q_0(z|x); log q(z_T|x) at the flowed sample."""

    def flow(self, z_0: Tensor, h: Tensor, log_q_0: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        q, h = self.net.encoder(x.flatten(1))
        q_0, p_z = diagonal(q.mu, q.logvar), self.prior()

        def log_w(c: int) -> Tensor:
            z_0 = q_0.sample((c,))  # [c, B, d]
            z, log_q = self.flow(z_0, h, q_0.log_prob(z_0))
            return self.likelihood(z).log_prob(x) + p_z.log_prob(z) - log_q

        return streaming_iwae(log_w, k, chunk=max(1, max_rows // x.shape[0]))

    def posterior(self, x):
        raise NotImplementedError("a flow's q(z_T|x): use log_likelihood()")


class AuthorsHF(AuthorsFlow):
    """models.HF.importance_sample: z_T = H(h) z_0, volume preserving."""

    def flow(self, z_0, h, log_q_0):
        householder = self.net.householderflow(h)  # [B, d, d], their product of reflections
        return (householder @ z_0.unsqueeze(-1)).squeeze(-1), log_q_0


class AuthorsIAF(AuthorsFlow):
    """models.IAF.importance_sample: their ``iaf`` on rows of [c * B, d] (their 2-d layout)."""

    def flow(self, z_0, h, log_q_0):
        c, b, d = z_0.shape
        z, log_q = self.net.iaf(z_0.reshape(c * b, d), h.repeat(c, 1), log_q_0.reshape(-1).clone())
        return z.reshape(c, b, d), log_q.reshape(c, b)


class AuthorsVLAE(AuthorsVAE):
    """models.VLAE.importance_sample: their mode updates and Laplace precision at mu_T."""

    def posterior(self, x):
        net, x_flat = self.net, x.flatten(1)
        q, _ = net.encoder(x_flat)
        mu = q.mu
        for i in range(net.n_update):
            p_x_z, w_dec = net.decoder.forward(mu, compute_jacobian=True)
            mu_new, _ = net.solve_mu(x_flat, mu, p_x_z, w_dec)
            lr = net.update_rate(i)
            mu = (1 - lr) * mu + lr * mu_new
        p_x_z, w_dec = net.decoder.forward(mu, compute_jacobian=True)
        _, precision = net.solve_mu(x_flat, mu, p_x_z, w_dec)  # their J^T J / sigma^2 + I at mu_T
        return PrecisionGaussian(mu, torch.linalg.cholesky(precision))


WRAPPERS = {"vae": AuthorsVAE, "savae": AuthorsSAVAE, "vae_hf": AuthorsHF,
            "vae_iaf": AuthorsIAF, "vlae": AuthorsVLAE}  # fmt: skip


@torch.no_grad()
def copy_into_ours(family: str, net: nn.Module, ours: nn.Module) -> None:
    """Their parameters (and IAF masks) into our model of the same family and switches."""
    e, d = net.encoder, net.decoder
    ours.encoder[0].load_state_dict(e.linear_hidden0.state_dict())
    ours.encoder[2].load_state_dict(e.linear_hidden1.state_dict())
    if family == "vlae":  # mean-only head; their log-variance head is unused
        ours.q_head.load_state_dict(e.linear_mu.state_dict())
    else:
        ours.q_head.weight.copy_(torch.cat([e.linear_mu.weight, e.linear_logvar.weight]))
        ours.q_head.bias.copy_(torch.cat([e.linear_mu.bias, e.linear_logvar.bias]))
    for i, name in ((0, "linear_hidden0"), (2, "linear_hidden1"), (4, "linear_mu")):
        ours.decoder[i].load_state_dict(getattr(d, name).state_dict())
    ours.p_x.log_var.fill_(d.logvar.item())
    if family == "vae_hf":
        first, *rest = net.householderflow.linear_flows
        ours.flow.first.load_state_dict(first.state_dict())
        for a, b in zip(ours.flow.rest, rest, strict=True):
            a.load_state_dict(b.state_dict())
    if family == "vae_iaf":  # needs iaf_mask_context: their context columns are masked
        for m, t in zip(ours.flow.steps, net.AutoregressiveNN, strict=True):
            t.apply_mask()
            z = m.w_z.weight.shape[1]
            m.w_z.weight.copy_(t.W.weight[:, :z])
            m.mask_w.copy_(t.W_mask[:, :z])
            m.mask_v.copy_(t.V_mask)
            m.b.copy_(t.b)
            m.v_m.weight.copy_(t.V_m.weight)
            m.v_m.bias.copy_(t.c_m)
            m.v_s.weight.copy_(t.V_s.weight)
            m.v_s.bias.copy_(t.c_s)
            m.act.weight.copy_(t.relu.weight)


@torch.no_grad()
def same_weights_gap(family: str, net: nn.Module, ours: nn.Module, x: Tensor, k: int = 50):
    """Max |log p(x)| difference of our model holding their weights (copy_into_ours) and the
    wrapped authors' model, from one random stream: float rounding only if ours computes what
    theirs does (each SVI step, flow and mode update; the VLAE's training sample maps eps to z
    differently, so its ELBO agrees only in distribution)."""
    copy_into_ours(family, net, ours)
    log_px = []
    for model in (ours, WRAPPERS[family](net)):
        torch.manual_seed(0)
        log_px.append(model.log_likelihood(x, k))
    return (log_px[0] - log_px[1]).abs().max().item()
