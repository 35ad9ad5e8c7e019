"""Networks: shapes, float32 parameters with bfloat16 compute, label null class."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from difflab import models
from difflab.models import nets

NETS = {
    "mlp": ((2,), {"width": 32, "depth": 2}),
    "unet": ((8, 8, 1), {"width": 16, "mults": (1, 2), "blocks": 1}),
    "dit": ((8, 8, 3), {"width": 32, "depth": 2, "heads": 4, "patch": 2, "mlp_ratio": 2.0}),
}


def build(name, dtype="float32", classes=10):
    shape, kw = NETS[name]
    mc = ml_collections.ConfigDict({"net": name, "dtype": dtype, **kw})
    return shape, models.split(nets.build(mc, shape, classes, seed=0))


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shapes_and_dtypes(name, dtype):
    shape, (graphdef, params) = build(name, dtype)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    d = models.denoiser(graphdef, params)
    x = jax.random.normal(jax.random.key(0), (4, *shape))
    y = jax.jit(d)(x, jnp.linspace(0, 1, 4), jnp.array([0, 3, -1, 9]))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert np.isfinite(np.asarray(y)).all()


def perturbed(params, scale: float, seed: int = 1):
    """params + scale * N(0, 1) noise, drawn with numpy."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + scale * rng.standard_normal(p.shape, np.float32), params)


@pytest.mark.parametrize("name", sorted(NETS))
def test_label_changes_output_and_null_is_unconditional(name):
    shape, (graphdef, params) = build(name)

    # perturb every parameter so zero-initialised output layers do not hide the conditioning
    # (on the host: one compiled normal draw per parameter took 14 s to compile for the U-Net)
    # parameters as arguments: closed over, they would be folded into the program as constants
    apply = jax.jit(lambda p, x, c: models.denoiser(graphdef, p)(x, 0.5, c))
    noisy, x = perturbed(params, 0.05), jnp.ones((2, *shape))
    a = apply(noisy, x, jnp.array([1, 2]))
    assert not np.allclose(a[0], a[1])
    null = apply(noisy, x, jnp.array([-1, -1]))
    np.testing.assert_allclose(apply(noisy, x, None), null, atol=1e-6)


def test_unknown_net_and_dtype():
    mc = ml_collections.ConfigDict({"net": "resnet", "dtype": "float32"})
    with pytest.raises(ValueError, match="config.model.net must be one of"):
        nets.build(mc, (2,), 0, 0)
    with pytest.raises(ValueError, match="config.model.dtype must be one of"):
        nets.compute_dtype("float16x")


def test_dit_rejects_bad_patch():
    mc = ml_collections.ConfigDict(
        {
            "net": "dit",
            "dtype": "float32",
            "width": 32,
            "depth": 1,
            "heads": 4,
            "patch": 3,
            "mlp_ratio": 2.0,
        }
    )
    with pytest.raises(ValueError, match="divisible by patch=3"):
        nets.build(mc, (8, 8, 1), 0, 0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sequence_transformer(dtype):
    """Tokens [B, L] (mask = V) -> float32 logits [B, L, V]; time optional; labels condition."""
    outs = {}
    for use_time in (True, False):
        mc = ml_collections.ConfigDict(
            {
                "net": "transformer",
                "dtype": dtype,
                "width": 32,
                "depth": 2,
                "heads": 4,
                "mlp_ratio": 2.0,
                "time_conditioning": use_time,
            }
        )
        graphdef, params = models.split(nets.build(mc, (12,), 10, seed=0, vocab_size=5))
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
        params = perturbed(params, 0.1)  # on the host: an eager draw per shape compiles each
        d = jax.jit(models.denoiser(graphdef, params))
        z = jax.random.randint(jax.random.key(0), (3, 12), 0, 6)
        y = d(z, jnp.array([0.1, 0.5, 0.9]), jnp.array([1, 2, -1]))
        assert y.shape == (3, 12, 5) and y.dtype == jnp.float32
        assert np.isfinite(np.asarray(y)).all()
        y_t = d(z, jnp.array([0.7, 0.2, 0.3]), jnp.array([1, 2, -1]))
        outs[use_time] = float(jnp.abs(y - y_t).max())
        y_c = d(z, jnp.array([0.1, 0.5, 0.9]), jnp.array([3, 2, -1]))
        assert float(jnp.abs(y - y_c)[0].max()) > 0 and float(jnp.abs(y - y_c)[1:].max()) == 0
    assert outs[True] > 0 and outs[False] == 0  # time_conditioning=False ignores t
    with pytest.raises(ValueError, match="token sequences"):
        nets.build(mc, (8, 8, 1), 0, 0, vocab_size=5)


def test_a_network_built_again_reuses_its_compiled_initialiser():
    """The same network again: the same parameters from the kept initialiser (no new entry);
    any change of seed, width, data shape or classes: a new initialiser and new parameters."""
    mc = ml_collections.ConfigDict({"net": "mlp", "dtype": "float32", "width": 8, "depth": 1})

    def params(mc=mc, shape=(2,), classes=0, seed=0):
        return jax.tree.leaves(models.split(nets.build(mc, shape, classes, seed))[1])

    first = params()
    kept = len(nets.INITIALISERS)
    again = params()
    assert len(nets.INITIALISERS) == kept
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    wider = ml_collections.ConfigDict({**mc.to_dict(), "width": 16})
    for other in (params(seed=1), params(mc=wider), params(shape=(3,)), params(classes=4)):
        same = len(other) == len(first) and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other, strict=True)
        )
        assert not same
    assert len(nets.INITIALISERS) == kept + 4


def test_components_initialise_the_network_only_when_asked():
    """A run's components (what loading a checkpoint builds) hold the network's structure; its
    initial parameters are compiled and made on first use, equal to nets.build's."""
    from difflab.training.components import build as build_components
    from tests.helpers import tiny_config

    c = tiny_config()
    c.seed = 90_210  # a network no other test builds
    comp = build_components(c)
    kept = len(nets.INITIALISERS)
    assert comp.graphdef == nets.structure(*comp.net_args)
    assert len(nets.INITIALISERS) == kept
    params = comp.init_params
    assert len(nets.INITIALISERS) == kept + 1
    direct = models.split(nets.build(c.model, (2,), 0, 90_210))[1]
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(direct), strict=True):
        np.testing.assert_array_equal(a, b)
