"""ADGAN's latent search (Algorithm 1 of Deecke et al. 2018), batched over images and seeds.

For every image x and seed j, starting from z_j,0 ~ p_z and the trained generator parameters
theta, take k simultaneous Adam steps on z and on the seed's own copy of theta to lower the
squared L2 distance between g_theta(z) and x; the score is the mean over seeds of the loss
after the k-th update. ``reference.py`` states it in plain torch.

BatchNorm during the search (``bn_stats``): by default (``"running"``) every BatchNorm layer
normalises with the running statistics estimated during training, as a generator in eval
mode does, and the seeds are independent. With ``"seeds"`` it normalises with the batch
statistics of the image's n_seeds searches (per channel, over seeds and positions), as a
generator left in training mode does when those seeds form its batch; the seeds of an image
are then coupled through the statistics, and the gradient of the summed loss flows through
them. Either way the affine scale and shift are part of theta, adapted per seed like the
convolution weights, and the running statistics themselves stay fixed. The paper does not
say which; docs/results.md compares them on the training split.

Read the package in this order:

* ``config.py``: ``SearchConfig`` (the settings, the paper's by default) and
  ``SearchResult``;
* ``reference.py``: ``kernel="loop"``, the specification: one deep copy of the generator
  and two ``torch.optim.Adam`` per (image, seed);
* ``batched.py``: ``kernel="bmm"``: the parameters of all pairs of a chunk stacked with a
  leading pair axis, each transposed convolution one batched product and ``fold``, autograd
  for the backward pass;
* ``fused.py``: ``kernel="fused"`` (the default, ``"auto"``): the same forward pass, the
  backward pass written by hand into buffers allocated once, each layer's Adam step taken as
  soon as its gradient is known, a few pairs at a time;
* ``chunks.py``: ``latent_search``: the pairs in chunks that bound the memory, on worker
  threads;
* ``native.py`` (and ``native.c``): the compiled CPU kernel the fused kernel uses where it
  is available, its build, cache and checks;
* ``mixed.py``: ``precision="mixed"``, the fused kernel with each pair's state for the
  compiled convolutions in bfloat16 beside the shared float32 weights (half the bytes to
  move per step; "exact", the default, keeps the generator's float type throughout).

Adam is element-wise and the loss is a sum over pairs whose terms depend on disjoint
parameters, so the batched kernels are exactly an independent Adam per pair; the tests
check all three implementations agree.
"""

from adgan.search.batched import batched_generate, generator_parameters, pair_loss
from adgan.search.chunks import auto_max_pairs, latent_search
from adgan.search.config import (
    BN_STATS,
    KERNELS,
    PRECISIONS,
    SearchConfig,
    SearchResult,
    log_prior,
)

__all__ = [
    "BN_STATS",
    "PRECISIONS",
    "KERNELS",
    "SearchConfig",
    "SearchResult",
    "auto_max_pairs",
    "batched_generate",
    "generator_parameters",
    "latent_search",
    "log_prior",
    "pair_loss",
]
