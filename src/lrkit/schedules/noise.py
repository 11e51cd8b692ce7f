"""Counter-based Gaussian noise: a pure function of ``(seed, step)``.

The value at a step never depends on which steps were evaluated before, so a noisy
schedule resumes identically and can be evaluated in any order or in blocks.
Uniforms come from SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014) and are turned into normals by Box-Muller:
``z = sqrt(-2 ln u1) * cos(2 pi u2)``.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser applied element-wise (uint64 arithmetic wraps mod 2**64)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _uniform(seed: int, counters: np.ndarray) -> np.ndarray:
    """Uniforms in (0, 1] from the 53 high bits of ``splitmix64(splitmix64(seed) + counter)``."""
    key = _splitmix64(np.array([seed], dtype=np.uint64))
    bits = _splitmix64(key + counters)
    return ((bits >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * 2.0**-53


def standard_normal(seed: int, steps: np.ndarray) -> np.ndarray:
    """One N(0, 1) draw per step (steps are floored to integers), reproducible from (seed, step)."""
    steps = np.asarray(steps, dtype=np.float64)
    counters = np.floor(steps).astype(np.uint64).ravel()
    u1 = _uniform(seed, 2 * counters)
    u2 = _uniform(seed, 2 * counters + np.uint64(1))
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return z.reshape(steps.shape)
