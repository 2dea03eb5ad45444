"""The RBF kernel width of the one-class SVM baseline: the criterion of Evangelista et al.
(the ADGAN paper's "automated tuning" [16])."""

from __future__ import annotations

import numpy as np

#: keeps Evangelista et al.'s ratio finite where every kernel value underflows to zero
KERNEL_EPS = 1e-12


def kernel_criterion(sq_dists: np.ndarray, gamma: float) -> float:
    """s^2 / (kbar + eps) of the kernel values exp(-gamma * d^2) over the given pairs."""
    k = np.exp(-gamma * sq_dists)
    return float(k.var() / (k.mean() + KERNEL_EPS))


def evangelista_gamma(
    Z: np.ndarray, gammas=None, max_samples: int = 2000, random_state: int | None = 0
) -> tuple[float, np.ndarray, np.ndarray]:
    """RBF ``gamma`` for a one-class SVM by the criterion of Evangelista et al. (2006).

    With K_ij = exp(-||z_i - z_j||^2 / (2 sigma^2)), pick the sigma that maximises
    s^2 / (kbar + eps), where kbar and s^2 are the mean and the variance of the off-diagonal
    entries of K: a kernel that is neither all ones (sigma too wide) nor the identity
    (sigma too narrow) but spreads its values. ``gamma = 1 / (2 sigma^2)``.

    Parameters
    ----------
    Z : ndarray (n, d)
        Training features.
    gammas : sequence of float or None
        Candidate gammas. None: sigma = m * 2**(j / 4) for j = -16, ..., 16, with m the median
        pairwise distance, a log grid from m / 16 to 16 m that adapts to the data's scale.
    max_samples : int
        At most this many rows (drawn with ``random_state``) enter K: the criterion is a
        statistic of the kernel values, and K is quadratic in n.

    Returns
    -------
    gamma : float, the best candidate.
    gammas, criterion : ndarray, every candidate and its criterion value.

    References
    ----------
    P. F. Evangelista, M. J. Embrechts, B. K. Szymanski. Some properties of the Gaussian
    kernel for one class learning. ICANN 2007, LNCS 4668 (the ADGAN paper's [16]).
    """
    Z = np.asarray(Z, dtype=np.float64)
    if len(Z) > max_samples:
        Z = Z[np.sort(np.random.default_rng(random_state).choice(len(Z), max_samples, False))]
    sq = (Z**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * Z @ Z.T, 0.0)
    d2 = d2[np.triu_indices(len(Z), k=1)]  # K is symmetric: one triangle has the same stats
    if gammas is None:
        m = float(np.sqrt(np.median(d2))) if len(d2) else 1.0
        m = m if np.isfinite(m) and m > 0 else 1.0
        gammas = 1.0 / (2.0 * (m * 2.0 ** (np.arange(-16, 17) / 4.0)) ** 2)
    gammas = np.asarray(gammas, dtype=np.float64)
    crit = np.array([kernel_criterion(d2, g) for g in gammas])
    return float(gammas[int(np.argmax(crit))]), gammas, crit
