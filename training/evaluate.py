"""Validation ELBO and the importance-sampled test log-likelihood."""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from models.base import DEFAULT_MAX_ROWS


@torch.no_grad()
def elbo_terms(model, x: Tensor, batch_size: int) -> dict[str, float]:
    """Mean ELBO, log p(x|z) and KL over a whole split (one posterior sample per example)."""
    model.eval()
    sums = torch.zeros(3, device=x.device, dtype=torch.float64)
    for i in range(0, x.shape[0], batch_size):
        t = model(x[i : i + batch_size])
        sums += torch.stack([t.elbo.sum(), t.log_px_z.sum(), t.kl.sum()]).double()
    elbo, log_px_z, kl = (sums / x.shape[0]).tolist()  # one device sync for the whole split
    model.train()
    return {"elbo": elbo, "log_px_z": log_px_z, "kl": kl}


@torch.no_grad()
def estimate_log_likelihood(
    model, x: Tensor, k: int, seed: int = 0, max_rows: int = DEFAULT_MAX_ROWS
) -> dict[str, float]:
    """Mean importance-sampled log p(x) (nats per example) with k samples, its standard error, and
    the single-sample ELBO with its two terms on the same images (the columns some papers report).

    Examples are processed in batches of max_rows // k (at least 1), so k = 5000 fits in memory;
    the model chunks over k itself when one example's k samples exceed max_rows.
    """
    model.eval()
    torch.manual_seed(seed)
    start = time.perf_counter()
    batch = max(1, max_rows // k)
    parts = [
        model.log_likelihood(x[i : i + batch], k, max_rows) for i in range(0, x.shape[0], batch)
    ]
    ll = torch.cat(parts).double()
    seconds = time.perf_counter() - start
    elbo = elbo_terms(model, x, batch_size=max(1, max_rows // 8))
    model.train()
    return {
        "test_elbo": elbo["elbo"],
        "test_log_px_z": elbo["log_px_z"],
        "test_kl": elbo["kl"],
        "test_log_likelihood": ll.mean().item(),
        "test_log_likelihood_sem": (ll.std() / math.sqrt(ll.numel())).item(),
        "k": k,
        "n_test": ll.numel(),
        "seconds": seconds,  # of the log-likelihood estimate alone
    }
