"""The specification: ADGAN's latent search (Algorithm 1 of Deecke et al. 2018) in plain
torch, one (image, seed) pair at a time.

For every image x and seed j, starting from z_j,0 ~ p_z and the trained generator parameters
theta, take k simultaneous Adam steps

    z_j,t     <- Adam_z(z_j,t-1,     grad_z     l(g_theta_j,t-1(z_j,t-1), x))
    theta_j,t <- Adam_theta(theta_j,t-1, grad_theta l(g_theta_j,t-1(z_j,t-1), x))

with l the squared L2 norm of the difference, then return the per-seed losses
l(g_theta_j,k(z_j,k), x) after the k-th update; the score is their mean over seeds. Each
pair gets a fresh deep copy of the generator and its own two ``torch.optim.Adam``, so theta
is reset to the trained value for every image.

This is ``kernel="loop"``: slow, and kept as the definition the batched kernels
(``batched.py``, ``fused.py``) are tested against. Every function here takes one chunk of
P pairs, ``xs`` (P, C, H, W) and ``zs`` (P, latent), and returns (final losses (P,),
final latents (P, latent)) and, with ``record``, the latents and losses before every step
and after the last ((steps + 1, P, latent), (steps + 1, P)).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from adgan.search.config import SearchConfig


def search_loop(gen, xs, zs, cfg: SearchConfig, record: bool):
    """The reference for ``cfg.bn_stats``: the generator in eval mode (running statistics,
    seeds independent), or the seeds of each image normalised together."""
    loop = search_seeds_loop if cfg.bn_stats == "seeds" else search_pairs_loop
    return loop(gen, xs, zs, cfg, record)


def search_pairs_loop(gen, xs, zs, cfg: SearchConfig, record: bool):
    """The plain reference: for each pair, a fresh copy of the generator and two Adams."""
    out_loss, out_z, zps, lps = [], [], [], []
    for p in range(xs.shape[0]):
        g = copy.deepcopy(gen).eval()
        z = zs[p : p + 1].detach().clone().requires_grad_(True)
        opt_z = torch.optim.Adam([z], lr=cfg.lr_z, betas=cfg.betas, eps=cfg.eps)
        params = list(g.parameters()) if cfg.adapt_generator else []
        opt_t = (
            torch.optim.Adam(params, lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps)
            if params
            else None
        )
        if not params:
            g.requires_grad_(False)
        zp, lp = [], []
        for _ in range(cfg.steps):
            loss = ((g(z) - xs[p : p + 1]) ** 2).sum()
            zp.append(z.detach().cpu().numpy()[0].copy())
            lp.append(float(loss.detach()))
            opt_z.zero_grad()
            if opt_t is not None:
                opt_t.zero_grad()
            loss.backward()
            opt_z.step()
            if opt_t is not None:
                opt_t.step()
        with torch.no_grad():
            final = float(((g(z) - xs[p : p + 1]) ** 2).sum())
        zp.append(z.detach().cpu().numpy()[0].copy())
        lp.append(final)
        out_loss.append(final)
        out_z.append(zp[-1])
        zps.append(np.stack(zp))
        lps.append(np.array(lp))
    res = (np.array(out_loss), np.stack(out_z))
    if record:
        return res + (np.stack(zps, axis=1), np.stack(lps, axis=1))
    return res


def search_seeds_loop(gen, xs, zs, cfg: SearchConfig, record: bool):
    """The plain reference for "seeds" statistics: for each image, a fresh copy of the
    generator and two Adams per seed; each BatchNorm layer normalises the seeds' outputs
    together (``F.batch_norm`` in training mode on the batch of the image's seeds), then
    applies each seed's own scale and shift; one backward pass of the image's summed loss."""
    S = cfg.n_seeds
    out_loss, out_z, zps, lps = [], [], [], []
    for start in range(0, xs.shape[0], S):
        x = xs[start : start + 1]
        gens = [copy.deepcopy(gen).eval() for _ in range(S)]
        zl = [zs[start + j : start + j + 1].detach().clone().requires_grad_(True) for j in range(S)]
        opts = [torch.optim.Adam([z], lr=cfg.lr_z, betas=cfg.betas, eps=cfg.eps) for z in zl]
        for g in gens:
            if cfg.adapt_generator:
                opts.append(
                    torch.optim.Adam(g.parameters(), lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps)
                )
            else:
                g.requires_grad_(False)

        def generate(gens=gens, zl=zl):
            hs = [z.reshape(1, -1, 1, 1) for z in zl]
            for i in range(len(gen.convs)):
                hs = [g.convs[i](h) for g, h in zip(gens, hs, strict=True)]
                if i == len(gen.convs) - 1:
                    return [torch.tanh(h) for h in hs]
                norm = gen.norms[i]
                normed = F.batch_norm(torch.cat(hs), None, None, training=True, eps=norm.eps)
                hs = [
                    torch.relu(
                        normed[j : j + 1] * g.norms[i].weight[None, :, None, None]
                        + g.norms[i].bias[None, :, None, None]
                    )
                    for j, g in enumerate(gens)
                ]

        zp, lp = [], []
        for _ in range(cfg.steps):
            losses = [((h - x) ** 2).sum() for h in generate()]
            zp.append(torch.cat(zl).detach().cpu().numpy().copy())
            lp.append(np.array([float(v.detach()) for v in losses]))
            for o in opts:
                o.zero_grad()
            torch.stack(losses).sum().backward()
            for o in opts:
                o.step()
        with torch.no_grad():
            final = np.array([float(((h - x) ** 2).sum()) for h in generate()])
        zp.append(torch.cat(zl).detach().cpu().numpy().copy())
        lp.append(final)
        out_loss.append(final)
        out_z.append(zp[-1])
        zps.append(np.stack(zp))
        lps.append(np.stack(lp))
    res = (np.concatenate(out_loss), np.concatenate(out_z))
    if record:
        return res + (np.concatenate(zps, axis=1), np.concatenate(lps, axis=1))
    return res
