"""Validation ELBO, the importance-sampled test log-likelihood, active units, sample grids."""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from models.base import DEFAULT_MAX_ROWS

AU_THRESHOLD = 0.01
"""A unit is active when Var_x(E_q[z_u]) exceeds this (Burda et al. 2016)."""
AU_BATCH_SIZE = 500
"""The hierarchical papers' validation batch size, over which their per-batch variant is taken."""
NO_LATENTS = {"active_units": math.nan, "active_units_per_batch": math.nan, "latent_dims": -1}
"""The active-unit columns of a family without posterior means (a flow, SPVAE)."""
TEMPERATURES = (1.0, 0.8, 0.6, 0.4)
"""Prior temperatures of the sample grids (the hierarchical papers' figures)."""


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
def active_units(
    model, x: Tensor, batch_size: int = AU_BATCH_SIZE, threshold: float = AU_THRESHOLD
) -> dict[str, float]:
    """Fraction of active latent units: A_u = Var_x(E_q[z_u]) > threshold (Burda et al. 2016).

    ``active_units``: the variance over the whole split (the project's default), merged batch by
    batch in float64 (Chan et al.'s pairwise update, so no cancellation and never all means at
    once). ``active_units_per_batch``: the hierarchical papers' code, the fraction within each
    batch of ``batch_size``, averaged over batches (unweighted; a batch of one example, whose
    variance is undefined, is left out). Both use the unbiased variance, as the authors'
    torch.var (NaN with fewer than 2 examples). ``latent_dims``: D, the number of units.
    Needs ``model.latent_means(x) -> [B, D]``.
    """
    was_training = model.training
    model.eval()
    n, mean, m2, per_batch = 0, None, None, []
    for i in range(0, x.shape[0], batch_size):
        mu = model.latent_means(x[i : i + batch_size]).double()  # [b, D]
        b, mu_b = mu.shape[0], mu.mean(0)
        m2_b = (mu - mu_b).square().sum(0)
        if b > 1:
            per_batch.append((m2_b / (b - 1) > threshold).double().mean())
        if mean is None:
            n, mean, m2 = b, mu_b, m2_b
        else:
            delta, total = mu_b - mean, n + b
            mean = mean + delta * (b / total)
            m2 = m2 + m2_b + delta.square() * (n * b / total)
            n = total
    model.train(was_training)
    nan = m2.new_tensor(math.nan)  # the unbiased variance of a single example is undefined
    whole = (m2 / (n - 1) > threshold).double().mean() if n > 1 else nan
    batches = torch.stack(per_batch).mean() if per_batch else nan
    whole, batches = torch.stack([whole, batches]).tolist()  # one device sync
    return {"active_units": whole, "active_units_per_batch": batches, "latent_dims": m2.numel()}


def _active_units_or_none(model, x: Tensor, batch_size: int) -> dict[str, float]:
    """active_units, or NO_LATENTS for a family without posterior means."""
    if getattr(model, "latent_means", None) is None:
        return dict(NO_LATENTS)
    try:
        return active_units(model, x, batch_size)
    except NotImplementedError:  # e.g. a flow: q(z_T|x) has no closed-form mean
        return dict(NO_LATENTS)


@torch.no_grad()
def estimate_log_likelihood(
    model,
    x: Tensor,
    k: int,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    batch_size: int = AU_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Mean importance-sampled log p(x) (nats per example) with k samples, its standard error, the
    same in bits per dimension, the single-sample ELBO with its two terms on the same images (the
    columns some papers report), and the active units (``batch_size``: their per-batch variant's).

    Examples are processed in batches of max_rows // k (at least 1), so k = 5000 fits in memory;
    the model chunks over k itself when one example's k samples exceed max_rows.
    ``progress(done, total)``, when given, is called after each batch with the examples done
    (training.progress.meter; on a GPU each call waits for the batch, so it is only for a person
    watching).
    """
    model.eval()
    torch.manual_seed(seed)
    start = time.perf_counter()
    batch, n = max(1, max_rows // k), x.shape[0]
    parts = []
    for i in range(0, n, batch):
        parts.append(model.log_likelihood(x[i : i + batch], k, max_rows))
        if progress is not None:
            if x.is_cuda:  # count finished batches, not queued ones
                torch.cuda.synchronize(x.device)
            progress(min(i + batch, n), n)
    ll = torch.cat(parts).double()
    seconds = time.perf_counter() - start
    elbo = elbo_terms(model, x, batch_size=max(1, max_rows // 8))
    units = _active_units_or_none(model, x, batch_size)
    model.train()
    test_ll = ll.mean().item()
    return {
        "test_elbo": elbo["elbo"],
        "test_log_px_z": elbo["log_px_z"],
        "test_kl": elbo["kl"],
        "test_log_likelihood": test_ll,
        "test_log_likelihood_sem": (ll.std() / math.sqrt(ll.numel())).item(),
        # bits/dim of C*H*W data dimensions, as the hierarchical papers report 8-bit RGB data
        "test_bpd": -test_ll / (math.log(2) * math.prod(x.shape[1:])),
        **units,
        "k": k,
        "n_test": ll.numel(),
        "seconds": seconds,  # of the log-likelihood estimate alone
    }


@contextlib.contextmanager
def _restoring(model):
    """model.eval() inside, the model's train/eval mode as it was after (also on an error)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _takes(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def sample_temperatures(model, temperatures=TEMPERATURES) -> tuple[float, ...]:
    """The temperatures a family's ``sample`` can draw at: all of them when it takes a
    ``temperature`` (the hierarchical families scale their latent prior stds), else only 1.0."""
    if _takes(model.sample, "temperature"):
        return tuple(float(t) for t in temperatures)
    return (1.0,)


def shows_mean(model) -> bool:
    """Whether sample_grids shows the decoder's mean image (its ``sample`` takes ``mean``)."""
    return _takes(model.sample, "mean")


def to_pixels(x: Tensor, data=None) -> np.ndarray:
    """Model-space images [n, C, H, W] -> uint8 grey levels: the data's centring (pixel_mean) and
    logit transform (training.images.logit_dequantise, at the dequantisation noise's mean 1/2)
    undone when ``data`` (training.data.Data) applied them, then clamped to [0, 1]."""
    if data is not None and data.pixel_mean is not None:
        x = x + data.pixel_mean
    if data is not None and data.logit_lambda is not None:
        lam = data.logit_lambda
        x = ((torch.sigmoid(x) - lam) / (1 - 2 * lam) * 256 - 0.5) / 255
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def sample_grids(
    model, n: int = 64, temperatures=TEMPERATURES, seed: int = 0, data=None
) -> dict[str, np.ndarray]:
    """{"t1.0": uint8 [n, C, H, W], "t0.8": ...}: n images from the prior at each temperature.

    Where the family's ``sample`` takes ``mean``, the decoder's mean image (the Bernoulli
    probabilities, the Gaussian's or the logistic mixture's mean) is shown instead of a pixel
    draw: a draw of binary pixels is noise on top of the picture (the DVP-VAE authors show the
    Bernoulli mean too). A family whose ``sample`` takes no ``temperature`` gives only "t1.0"
    (sample_temperatures): its other temperatures are not faked. Every temperature starts from
    the same seed, so with a temperature the rows differ by it alone; the caller's RNG state is
    left as it was. ``data``: the Data the model was trained on, to undo its transforms
    (to_pixels). A model without ``sample`` raises NotImplementedError.
    """
    if not callable(getattr(model, "sample", None)):
        raise NotImplementedError(f"{type(model).__name__} has no sample(n)")
    temps = sample_temperatures(model, temperatures)
    kwargs = {"mean": True} if shows_mean(model) else {}
    tempered = _takes(model.sample, "temperature")
    shape = data.x_shape if data is not None else getattr(model, "x_shape", None)
    device = next(model.parameters()).device
    cuda = [device] if device.type == "cuda" else []
    grids = {}
    with torch.random.fork_rng(devices=cuda), _restoring(model):
        for t in temps:
            torch.manual_seed(seed)
            x = model.sample(n, **kwargs, **({"temperature": t} if tempered else {})).float()
            if shape is not None:  # a family that draws flat [n, D] vectors
                x = x.reshape(n, *shape)
            if x.dim() != 4:
                raise ValueError(f"{type(model).__name__}.sample gave {tuple(x.shape)}, not "
                                 "[n, C, H, W] images; pass data= for the image shape")  # fmt: skip
            grids[f"t{t}"] = to_pixels(x, data)
    return grids
