"""Guidance: functions from denoisers to denoisers, so every sampler takes every guidance.

Classifier-free guidance (`classifier_free`, MATH.md §6.1) mixes the conditional and
unconditional predictions linearly in one batched network call; the mixing lives in
`models.mixing`, which the shortcut process also uses for its guided bootstrap targets.
"""

from __future__ import annotations

from difflab.models.mixing import classifier_free, network_passes

__all__ = ["classifier_free", "network_passes"]
