"""Shared numerical helpers of the test-suite."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def rel_error(a, b) -> float:
    """‖a − b‖ / ‖b‖ (0 when both vanish)."""
    a, b = np.asarray(a), np.asarray(b)
    denominator = np.linalg.norm(b)
    if denominator == 0:
        return float(np.linalg.norm(a))
    return float(np.linalg.norm(a - b) / denominator)


def leaf_errors(grads, reference) -> dict[str, float]:
    """Relative error of every inexact-array leaf of ``grads`` against ``reference``."""
    ref = jax.tree_util.tree_leaves_with_path(eqx.filter(reference, eqx.is_inexact_array))
    got = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert len(ref) == len(got)
    return {jax.tree_util.keystr(path): rel_error(g, r) for (path, r), g in zip(ref, got)}


def leaf_cosines(grads, reference) -> dict[str, float]:
    """Cosine similarity of every inexact-array leaf of ``grads`` with ``reference``."""
    ref = jax.tree_util.tree_leaves_with_path(eqx.filter(reference, eqx.is_inexact_array))
    got = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    out = {}
    for (path, r), g in zip(ref, got):
        r, g = np.ravel(np.asarray(r, np.float64)), np.ravel(np.asarray(g, np.float64))
        norms = np.linalg.norm(g) * np.linalg.norm(r)
        both_zero = not np.any(g) and not np.any(r)  # e.g. a frozen parameter
        out[jax.tree_util.keystr(path)] = 1.0 if both_zero else float(g @ r / (norms + 1e-300))
    return out


def random_inputs(seed: int, shape, dtype=jnp.float64):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


def slope(xs, ys) -> float:
    """Least-squares slope of log(ys) against log(xs)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])
