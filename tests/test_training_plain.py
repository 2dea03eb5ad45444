"""GAN training against a plain loop written here (per-parameter optimisers, a critic pass
per batch, as the paper's training reads): the same weights to float rounding. A guard for
changes made for speed (benchmarks/train_speed.py, benchmarks/train_step_ab.py)."""

import pytest
import torch

from adgan.nets.dcgan import Critic, DCGANConfig, Generator
from adgan.torch_utils import seeded
from adgan.training import TrainConfig, gradient_penalty, train_wgan


def plain_training(X, arch, cfg, seed):
    """The training loop of adgan.training written plainly (no moving averages, no
    BatchNorm recalibration at the end, which change neither network's weights)."""
    with seeded(seed):
        gen, critic = Generator(arch), Critic(arch)
    lr = cfg.learning_rate
    if cfg.objective == "wgan":
        opt_g = torch.optim.RMSprop(gen.parameters(), lr=lr, foreach=False)
        opt_d = torch.optim.RMSprop(critic.parameters(), lr=lr, foreach=False)
    else:
        opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=cfg.betas, foreach=False)
        opt_d = torch.optim.Adam(critic.parameters(), lr=lr, betas=cfg.betas, foreach=False)
    rng = torch.Generator().manual_seed(seed)
    batch = min(cfg.batch_size, len(X))
    for _ in range(cfg.iterations):
        gen.train()
        critic.train()
        for p in critic.parameters():
            p.requires_grad_(True)
        for _ in range(cfg.n_critic):
            real = X[torch.randint(len(X), (batch,), generator=rng)]
            z = torch.randn(batch, arch.latent_dim, generator=rng)
            with torch.no_grad():
                fake = gen(z)
            loss_d = -(critic(real).mean() - critic(fake).mean())
            if cfg.objective == "wgan-gp":
                loss_d = loss_d + cfg.gp_lambda * gradient_penalty(critic, real, fake, rng)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            if cfg.objective == "wgan":
                with torch.no_grad():
                    for p in critic.parameters():
                        p.clamp_(-cfg.clip, cfg.clip)
        for p in critic.parameters():
            p.requires_grad_(False)
        z = torch.randn(batch, arch.latent_dim, generator=rng)
        loss_g = -critic(gen(z)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return gen, critic


@pytest.mark.parametrize("objective,norm", [("wgan-gp", "layer"), ("wgan", "batch"),
                                            ("wgan-gp", "none")])  # fmt: skip
def test_training_equals_the_plain_loop_to_float_rounding(objective, norm):
    arch = DCGANConfig(image_size=8, channels=1, latent_dim=8, width=8, critic_norm=norm)
    cfg = TrainConfig(objective=objective, iterations=4, batch_size=16, critic_boost=False)
    X = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    gen, critic, _ = train_wgan(X, arch, cfg, seed=1)
    ref_gen, ref_critic = plain_training(X, arch, cfg, seed=1)
    for got, want in ((critic, ref_critic), (gen, ref_gen)):
        for (name, a), b in zip(got.named_parameters(), want.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    # and the parameters moved: the comparison is not between two initialisations
    with seeded(1):
        init = Generator(arch)
    pairs = zip(gen.parameters(), init.parameters(), strict=True)
    moved = max((a - b).abs().max() for a, b in pairs)
    assert moved > 1e-4
