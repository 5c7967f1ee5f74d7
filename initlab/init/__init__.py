"""Weight initializers: one fan helper, one gain table, one variance-scaling core, two registries.

Reading order (each module can be read without the ones after it):
  1. ``spec``: ``INITIALIZERS`` (per-weight schemes ``fn(weight, *, generator, activation, **params)
     -> None``, filled by ``register_init``), ``MODEL_INITIALIZERS`` (schemes that need the whole
     model and a data batch), and ``parse_spec`` / ``initialize`` / ``describe``: what the rest of
     initlab calls.
  2. ``scaling``: ``fans`` and ``calculate_gain``, the only sources of fans and gains, and
     ``variance_scaling``, the one core; Glorot, He and LeCun are small specializations of it.
  3. ``schemes``: the named per-weight initializers; ``structured``: the deterministic ``constant``
     and ZerO's ``zero_one``.
  4. ``lsuv`` and ``rbm``: the model-level ones, ``lsuv`` and ``dbn`` (RBM pre-training).
  5. ``mean_field``: not an initializer but the theory that places one: the length and correlation
     maps, chi_1, the depth scales and the order-to-chaos line (Poole et al. 2016, Schoenholz et
     al. 2017), its Gaussian expectations in ``quadrature``; ``mean_field_inits``: the sigma_w^2
     each init draws and the Jacobian spectrum at init (Pennington et al. 2017). Imported on demand
     (``from initlab.init import mean_field``), not by this package.

Importing ``initlab.init`` registers every initializer, model-level ones included, in that order.

Randomness is explicit: every draw comes from the ``torch.Generator`` passed in (on the
weight's device), so results are reproducible and the global RNG is never touched.
"""
from __future__ import annotations

# The import order is the registration order (what ``init_names`` and ``initlab inits`` list):
# variance_scaling, the schemes, then the model-level lsuv and dbn.
from initlab.init import lsuv, rbm  # noqa: F401  (each registers its model-level init)
from initlab.init.scaling import TRUNC_STD_FACTOR, calculate_gain, fans, gain_names, variance_scaling
from initlab.init.schemes import (
    kaiming,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    normal,
    orthogonal,
    torch_default,
    truncated_normal,
    uniform,
    xavier,
    xavier_uniform,
    zeros,
)
from initlab.init.spec import (
    BIAS_INITS,
    INIT_LAYER_TYPES,
    INITIALIZERS,
    MODEL_INITIALIZERS,
    bias_distribution,
    describe,
    format_spec,
    init_layers,
    init_names,
    init_params,
    initialize,
    parse_spec,
    register_init,
)
from initlab.init.structured import constant, zero_one

__all__ = [
    "fans", "calculate_gain", "gain_names", "variance_scaling", "TRUNC_STD_FACTOR",
    "INITIALIZERS", "MODEL_INITIALIZERS", "register_init", "init_names", "init_params",
    "INIT_LAYER_TYPES", "init_layers", "BIAS_INITS", "bias_distribution", "parse_spec", "format_spec",
    "describe", "initialize",
    "zeros", "uniform", "normal", "truncated_normal", "xavier", "xavier_uniform", "kaiming",
    "kaiming_uniform", "lecun_normal", "lecun_uniform", "orthogonal", "torch_default", "constant",
    "zero_one",
]
