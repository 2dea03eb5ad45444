"""The search batched over pairs (``kernel="bmm"``): the parameters of all (image, seed)
pairs of a chunk are stacked into tensors with a leading pair axis, each transposed
convolution runs as one batched matrix product (per-pair weights) followed by ``fold``, and
autograd computes the backward pass. The loss is a sum over pairs whose terms depend on
disjoint parameters (with "seeds" statistics: on the seeds of one image), and Adam is
element-wise, so one Adam over the stacked tensors is exactly an independent Adam per pair,
as in ``reference.py``. ``fused.py`` runs the same forward pass with a hand-written
backward pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from adgan.nets.dcgan import Generator
from adgan.search.config import SearchConfig


def generator_parameters(gen: Generator) -> list[torch.Tensor]:
    """theta in the order the batched forward consumes it: conv weight, then norm scale and
    shift, layer by layer."""
    out: list[torch.Tensor] = []
    for i, conv in enumerate(gen.convs):
        out.append(conv.weight)
        if i < len(gen.norms):
            out += [gen.norms[i].weight, gen.norms[i].bias]
    return out


def batched_generate(
    gen: Generator, params: list[torch.Tensor], z: torch.Tensor, groups: int = 0
) -> torch.Tensor:
    """g_theta_p(z_p) for P pairs at once; params[i] is generator_parameters(gen)[i] with a
    leading pair axis. BatchNorm uses the running statistics (eval mode), or with
    ``groups`` > 0 the batch statistics of each of that many groups of consecutive pairs."""
    P = z.shape[0]
    it = iter(params)
    h = z
    n_layers = len(gen.convs)
    for i, conv in enumerate(gen.convs):
        W = next(it)  # (P, Cin, Cout, k, k)
        cin, cout, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
        Wm = W.reshape(P, cin, cout * k * k)  # (P, Cin, Cout*k*k)
        if i == 0:  # 1x1 input: the first layer is a per-pair linear map
            h = torch.bmm(h.unsqueeze(1), Wm).reshape(P, cout, k, k)  # (P, Cout, s0, s0)
        else:
            side = h.shape[-1]
            cols = torch.bmm(
                Wm.transpose(1, 2), h.reshape(P, cin, side * side)
            )  # (P, Cout*k*k, HW)
            h = F.fold(
                cols, (2 * side, 2 * side), kernel_size=k, stride=2, padding=1
            )  # (P, Cout, 2H, 2W)
        if i < n_layers - 1:
            bn = gen.norms[i]
            gamma, beta = next(it), next(it)  # (P, Cout) each
            if groups:
                hg = h.reshape(groups, P // groups, *h.shape[1:])
                var, mean = torch.var_mean(hg, dim=(1, 3, 4), correction=0, keepdim=True)
                h = ((hg - mean) * torch.rsqrt(var + bn.eps)).reshape(h.shape)
                h = torch.relu(h * gamma[:, :, None, None] + beta[:, :, None, None])
                continue
            inv = torch.rsqrt(bn.running_var + bn.eps)  # (Cout,)
            scale = gamma * inv  # (P, Cout)
            shift = beta - bn.running_mean * scale  # (P, Cout)
            h = torch.relu(torch.addcmul(shift[:, :, None, None], h, scale[:, :, None, None]))
    return torch.tanh(h)


def pair_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of the difference, one value per pair: (P, C, H, W) -> (P,)."""
    return (recon - x).pow(2).flatten(1).sum(1)


def seed_groups(P: int, cfg: SearchConfig) -> int:
    """Images in a chunk of P pairs under "seeds" statistics (0: running statistics)."""
    if cfg.bn_stats != "seeds":
        return 0
    if P % cfg.n_seeds:
        raise ValueError(f"{P} pairs are not whole images of {cfg.n_seeds} seeds")
    return P // cfg.n_seeds


def search_pairs_bmm(gen, xs, zs, cfg: SearchConfig, record: bool):
    """One chunk of P pairs: stacked parameters, batched forward, fused Adam."""
    P = xs.shape[0]
    with torch.no_grad():
        theta = [
            p.detach().unsqueeze(0).repeat(P, *([1] * p.dim())) for p in generator_parameters(gen)
        ]
    z = zs.detach().clone()
    z.requires_grad_(True)
    fused = {"fused": True} if xs.device.type in ("cpu", "cuda") else {}
    opt_z = torch.optim.Adam([z], lr=cfg.lr_z, betas=cfg.betas, eps=cfg.eps, **fused)
    opt_t = None
    if cfg.adapt_generator:
        for t in theta:
            t.requires_grad_(True)
        opt_t = torch.optim.Adam(theta, lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps, **fused)
    groups = seed_groups(P, cfg)
    zp, lp = [], []
    for _ in range(cfg.steps):
        loss = pair_loss(batched_generate(gen, theta, z, groups), xs)  # (P,)
        if record:
            zp.append(z.detach().cpu().numpy().copy())
            lp.append(loss.detach().cpu().numpy())
        opt_z.zero_grad(set_to_none=True)
        if opt_t is not None:
            opt_t.zero_grad(set_to_none=True)
        # each pair's loss depends on its own z and theta only (with "seeds" statistics, also
        # on its image's other seeds): the gradient of the sum is what each pair's Adam takes
        loss.sum().backward()
        opt_z.step()
        if opt_t is not None:
            opt_t.step()
    with torch.no_grad():
        final = pair_loss(batched_generate(gen, theta, z, groups), xs)
    zf = z.detach().cpu().numpy()
    if record:
        zp.append(zf.copy())
        lp.append(final.cpu().numpy())
        return final.cpu().numpy(), zf, np.stack(zp), np.stack(lp)
    return final.cpu().numpy(), zf
