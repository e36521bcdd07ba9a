"""Test-wide settings: float64 is available (exactness claims are checked in float64); every
test that wants float32 asks for it explicitly."""

import jax

jax.config.update("jax_enable_x64", True)
