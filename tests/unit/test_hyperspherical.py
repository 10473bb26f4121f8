"""S-VAE, product-space S-VAE and N-VAE (models/hyperspherical/hyperspherical.py; reference
docs/specs/hyperspherical.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

import models
from models.hyperspherical.distributions import HypersphericalUniform, VonMisesFisher
from models.hyperspherical.hyperspherical import (
    Concatenated,
    NVAEConfig,
    PSVAEConfig,
    SVAEConfig,
    _NetworkVonMisesFisher,
)

X_SHAPE = (1, 28, 28)
SMALL = {"hidden_dims": "64,32"}
CASES = [
    ("svae", {"latent_dim": 4}),
    ("svae", {"latent_dim": 3, "bessel_ratio": "approx"}),
    ("psvae", {"latent_dim": 5, "spheres": "2,2,1"}),
    ("psvae", {"latent_dim": 4, "spheres": "1,1,1,1"}),
    ("nvae", {"latent_dim": 4}),
    ("nvae", {"latent_dim": 4, "covariance": "single"}),
    ("nvae", {"latent_dim": 4, "covariance": "full"}),
]
IDS = [f"{f}-{'-'.join(str(v) for v in c.values())}" for f, c in CASES]


@pytest.fixture(autouse=True)
def one_thread():
    """These models are small: one intra-op thread is as fast on an idle machine and many times
    faster on a busy one (OpenMP threads waiting for each other between hundreds of tiny ops)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(family: str, cfg: dict, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return models.build(family, {**SMALL, **cfg, **extra}, X_SHAPE)


def binary_batch(n: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, *X_SHAPE, generator=g), generator=g)


def vmf_kl_by_hand(model, x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """sum_i KL(vMF(mu_i, kappa_i) || U(S^{d_i})), spheres laid out in the order ``dims``."""
    h = model.encoder(x.flatten(1))
    locs, kappas = model.loc_head(h), F.softplus(model.kappa_head(h)) + 1
    total, start = 0, 0
    for i, d in enumerate(dims):
        loc = F.normalize(locs[:, start : start + d + 1], dim=-1)
        q = VonMisesFisher(loc, kappas[:, i : i + 1])
        total = total + kl_divergence(q, HypersphericalUniform(d + 1))
        start += d + 1
    return total


@pytest.mark.parametrize("family,cfg", CASES, ids=IDS)
def test_forward_gives_finite_terms_and_nonnegative_kl(family, cfg):
    terms = build(family, cfg)(binary_batch())
    assert terms.log_px_z.shape == terms.kl.shape == (16,)
    assert torch.isfinite(terms.elbo).all()
    assert (terms.kl >= 0).all()


def test_registry_and_defaults():
    assert {"svae", "psvae", "nvae"} <= set(models.REGISTRY)
    assert models.config_class("svae") is SVAEConfig
    assert models.config_class("psvae") is PSVAEConfig
    assert models.config_class("nvae") is NVAEConfig
    svae = models.build("svae", {}, X_SHAPE)  # UAI d = 10: an 11-dim ambient latent
    assert svae.loc_head.out_features == svae.decoder[0].in_features == 11
    assert [m.out_features for m in svae.encoder if isinstance(m, torch.nn.Linear)] == [256, 128]
    widths = [m.out_features for m in svae.decoder if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 256, 784]
    assert models.build("nvae", {}, X_SHAPE).decoder[0].in_features == 10
    assert PSVAEConfig(latent_dim=5, spheres=" 2, 2,1").sphere_dims == (2, 2, 1)


def test_svae_kl_depends_on_kappa_only():
    model, x = build("svae", {"latent_dim": 4}), binary_batch()
    with torch.no_grad():
        kl = model(x).kl
        loc = model.heads(x)[0][0]
        model.loc_head.weight.add_(torch.randn_like(model.loc_head.weight))
        assert not torch.allclose(model.heads(x)[0][0], loc)
        assert torch.equal(model(x).kl, kl)
        model.kappa_head.bias.add_(1.0)
        assert (model(x).kl > kl).all()  # larger kappa, farther from uniform


def test_psvae_with_one_sphere_is_the_svae():
    svae = build("svae", {"latent_dim": 5}, seed=0)
    psvae = build("psvae", {"latent_dim": 5, "spheres": "5"}, seed=1)
    psvae.load_state_dict(svae.state_dict())
    x = binary_batch()
    out = []
    for model in (svae, psvae):
        torch.manual_seed(3)
        terms = model(x)
        out.append((terms.log_px_z, terms.kl, model.log_likelihood(x, k=20, max_rows=64)))
    for a, b in zip(*out, strict=True):
        assert torch.equal(a, b)


def test_psvae_layout_kl_and_samples():
    model, x = build("psvae", {"latent_dim": 5, "spheres": "2,2,1"}), binary_batch()
    assert model.layout == ((3, 2), (2, 1))
    assert model.decoder[0].in_features == model.ambient_dim == 8
    assert model.kappa_head.out_features == 3
    with torch.no_grad():
        torch.manual_seed(0)
        kl = model(x).kl
        assert torch.allclose(kl, vmf_kl_by_hand(model, x, [2, 2, 1]), rtol=1e-5, atol=1e-6)
        q = model.posterior(x)
        for z in (q.rsample(), q.sample((7,))):
            assert z.shape[-1] == 8
            for block in z.split([3, 3, 2], dim=-1):
                norms = block.norm(dim=-1)
                assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
        assert q.log_prob(q.sample((7,))).shape == (7, 16)
        assert model.prior().sample((5,)).shape == (5, 8)
    # The order of the spheres is not part of the model: same layout, same parameters.
    other = build("psvae", {"latent_dim": 5, "spheres": "1,2,2"})
    assert other.layout == model.layout
    other.load_state_dict(model.state_dict())


def test_psvae_ten_circles_are_one_group():
    model = build("psvae", {"latent_dim": 10, "spheres": ",".join(["1"] * 10)})
    assert model.layout == ((2, 10),)
    assert len(model.posterior(binary_batch()).components) == 1


@pytest.mark.parametrize(
    "family,cfg,match",
    [
        ("psvae", {"latent_dim": 5, "spheres": "2,2"}, r"spheres '2,2' add up to 4.*latent_dim"),
        ("psvae", {"latent_dim": 5, "spheres": "0,5"}, "spheres must be comma-separated positive"),
        ("psvae", {"latent_dim": 5, "spheres": "a,b"}, "spheres must be comma-separated positive"),
        ("psvae", {"latent_dim": 5, "spheres": ""}, "spheres must be comma-separated positive"),
        ("psvae", {"latent_dim": 5, "spheres": 5}, "spheres must be a string"),
        ("svae", {"bessel_ratio": "foo"}, "bessel_ratio must be one of 'exact', 'approx'"),
        ("psvae", {"bessel_ratio": "foo"}, "bessel_ratio must be one of"),
        ("nvae", {"covariance": "foo"}, "covariance must be one of 'diagonal', 'single', 'full'"),
        ("svae", {"latent_dim": 0}, "latent_dim"),
        ("nvae", {"hidden_dims": "256,,128"}, "hidden_dims"),
        ("svae", {"likelihood": "poisson"}, "likelihood must be one of"),
    ],
)
def test_bad_configs_are_clear_errors(family, cfg, match):
    with pytest.raises(ValueError, match=match):
        models.build(family, cfg, X_SHAPE)


def test_nvae_full_covariance_kl_is_the_gaussian_kl():
    model, x = build("nvae", {"latent_dim": 4, "covariance": "full"}), binary_batch()
    with torch.no_grad():
        kl = model(x).kl
        h = model.encoder(x.flatten(1))
        mu, s = model.loc_head(h), model.scale_head(h)
        rows, cols = torch.tril_indices(4, 4)
        L = torch.zeros(16, 4, 4)
        L[:, rows, cols] = s
        L = L.tril(-1) + torch.diag_embed(F.softplus(L.diagonal(dim1=-2, dim2=-1)) + 1e-5)
        q = MultivariateNormal(mu, scale_tril=L)
        p = MultivariateNormal(torch.zeros(4), torch.eye(4))
        assert torch.allclose(kl, kl_divergence(q, p), rtol=1e-5)
        # and by the formula: (tr S + mu.mu - d - log det S) / 2, S = L L^T
        by_hand = 0.5 * (
            L.square().sum((-1, -2))
            + mu.square().sum(-1)
            - 4
            - 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        )
        assert torch.allclose(kl, by_hand, rtol=1e-4)
        assert torch.allclose(model.posterior(x).scale_tril, L)


def test_nvae_single_std_is_shared_across_dims():
    model, x = build("nvae", {"latent_dim": 4, "covariance": "single"}), binary_batch()
    q = model.posterior(x)
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    std = q.base_dist.scale
    assert std.shape == (16, 4)
    assert torch.equal(std, std[:, :1].expand_as(std))
    assert not torch.equal(std[0], std[1])  # but differs between examples
    assert model.scale_head.out_features == 1


@pytest.mark.parametrize(
    "family,cfg",
    [
        ("svae", {"latent_dim": 4}),
        ("psvae", {"latent_dim": 5, "spheres": "2,2,1"}),
        ("nvae", {"latent_dim": 4}),
        ("nvae", {"latent_dim": 4, "covariance": "full"}),
    ],
)
def test_iwae_is_finite_and_above_the_elbo(family, cfg):
    model, x = build(family, cfg), binary_batch(64)
    torch.manual_seed(0)
    ll = model.log_likelihood(x, k=50)
    with torch.no_grad():
        elbo = torch.stack([model(x).elbo for _ in range(20)]).mean(0)
    assert ll.shape == (64,) and torch.isfinite(ll).all()
    assert ll.mean() >= elbo.mean() - 0.05


def prototype_data(n: int = 256, seed: int = 0) -> torch.Tensor:
    """n noisy copies of 3 random binary 28x28 prototypes (5% of the pixels flipped)."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(3, *X_SHAPE, generator=g) < 0.3).float()
    x = protos[torch.randint(0, 3, (n,), generator=g)]
    flip = (torch.rand(x.shape, generator=g) < 0.05).float()
    return (x - flip).abs()


@pytest.mark.parametrize("family", ["svae", "nvae"])
def test_adam_steps_lower_the_loss(family):
    model, data = build(family, {"latent_dim": 4}), prototype_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_on_all() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return -model(data).elbo.mean().item()

    before = loss_on_all()
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, data.shape[0], (64,), generator=g)
        loss = -model(data[idx]).elbo.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = loss_on_all()
    assert math.isfinite(after) and after < 0.6 * before, (before, after)


@pytest.mark.parametrize("family,cfg", CASES, ids=IDS)
def test_gradients_reach_the_heads_and_every_parameter(family, cfg):
    model = build(family, cfg)
    (-model(binary_batch()).elbo.mean()).backward()
    heads = ("loc_head", "kappa_head" if family != "nvae" else "scale_head")
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    for head in heads:
        assert getattr(model, head).weight.grad.abs().sum() > 0


def test_gaussian_likelihood_and_initialise():
    model = build("psvae", {"latent_dim": 3, "spheres": "2,1"}, likelihood="gaussian")
    x = torch.rand(32, *X_SHAPE)
    model.initialise(x)
    expected = torch.log((x.flatten(1) - x.flatten(1).mean(0)).pow(2).mean())
    assert torch.allclose(model.p_x.log_var, expected)
    assert torch.isfinite(model(x).elbo).all()


@pytest.mark.parametrize("family", ["svae", "psvae"])
def test_a_diverged_network_gives_nan_terms_not_an_exception(family):
    cfg = {"latent_dim": 3} if family == "svae" else {"latent_dim": 3, "spheres": "2,1"}
    model, x = build(family, cfg), binary_batch(4)
    with torch.no_grad():
        model.kappa_head.bias.fill_(math.nan)  # the trainer's NaN guard must see it, not crash
        assert model(x).elbo.isnan().all()
        assert model.log_likelihood(x, k=3).isnan().all()
        model.kappa_head.bias.fill_(math.inf)
        assert not torch.isfinite(model(x).elbo).any()
        model.kappa_head.bias.fill_(0.0)
        model.encoder[0].weight.fill_(math.nan)
        assert model(x).elbo.isnan().all()


def test_concatenated_is_the_product_of_its_components():
    a = Independent(Normal(torch.zeros(5, 2, 3), torch.ones(5, 2, 3)), 2)  # event [2, 3]
    b = Normal(torch.ones(5), 2 * torch.ones(5))  # scalar event
    p = Concatenated([a, b])
    assert p.batch_shape == (5,) and p.event_shape == (7,)
    z = p.sample((4,))
    assert z.shape == (4, 5, 7)
    expected = a.log_prob(z[..., :6].reshape(4, 5, 2, 3)) + b.log_prob(z[..., 6])
    assert torch.allclose(p.log_prob(z), expected)
    q = Concatenated([Independent(Normal(torch.ones(2, 3), torch.ones(2, 3)), 2), Normal(0.0, 1.0)])
    assert torch.allclose(
        kl_divergence(p, q), kl_divergence(a, q.components[0]) + kl_divergence(b, q.components[1])
    )
    with pytest.raises(ValueError, match="different layouts"):
        kl_divergence(p, Concatenated([Normal(torch.zeros(7), 1.0)]))


def test_only_the_bad_rows_of_a_network_vmf_are_nan():
    loc = F.normalize(torch.randn(5, 4), dim=-1)
    kappa = torch.rand(5, 1) + 1
    loc[1, 0], kappa[3, 0], loc[4] = math.nan, math.inf, 0.0  # NaN, inf, zero-norm rows
    q = _NetworkVonMisesFisher(loc, kappa)
    kl = kl_divergence(q, HypersphericalUniform(4))
    z = q.sample((2,))
    bad = torch.tensor([False, True, False, True, True])
    assert kl[bad].isnan().all() and torch.isfinite(kl[~bad]).all()
    assert z[:, bad].isnan().all() and torch.isfinite(z[:, ~bad]).all()
    assert q.log_prob(z)[:, bad].isnan().all() and torch.isfinite(q.log_prob(z)[:, ~bad]).all()
    healthy = _NetworkVonMisesFisher(loc[~bad], kappa[~bad])
    assert torch.equal(kl_divergence(healthy, HypersphericalUniform(4)), kl[~bad])


@pytest.mark.parametrize("family,extra", [("svae", {}), ("psvae", {"model/spheres": "2,1,1"})])
def test_training_on_binarised_fashion_mnist_lowers_the_validation_loss(
    family, extra, tiny_data_root
):
    from training.config import Config
    from training.data import load_data
    from training.trainer import build_model, fit

    cfg = Config.from_dict(
        {
            "family": family,
            "data/dataset": "fashion_mnist",
            "data/root": str(tiny_data_root),
            "data/binarize": True,
            "model/latent_dim": 4,
            "model/hidden_dims": "64,32",
            "train/batch_size": 32,
            "train/lr": 3e-3,
            "train/max_epochs": 5,
            **extra,
        }  # fmt: skip
    )
    data = load_data(cfg.data)
    seen = []
    fit(build_model(cfg, data.x_shape), data, cfg.train, report=lambda m, _: seen.append(m))
    losses = [m["val_loss"] for m in seen]
    assert len(losses) == 5 and losses[-1] < losses[0] - 1.0, losses
