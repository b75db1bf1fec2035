"""Moving a stream between a 5-D (Model Garden) and a 4-D artifact: the state map.

A 4-D artifact (converters.stream4d) has Model Garden's states by the same names; a state
whose shape differs records Model Garden's shape (`StateSpec.model_garden_shape`). Each holds
Model Garden's elements in the same order — a stream buffer [1, k, H, W, C] as [1, k*H, W, C],
its frames stacked along the height axis; a pool's running sum [1, 1, 1, 1, C] as
[1, 1, 1, C] — so a state converts by a reshape, which copies nothing. A frame count that a
LiteRT float 4-D graph holds as float32 [1, 1, 1, 1] (Model Garden's is int32 [1]) converts by
a cast too, exact below 2**24 frames. Numpy only: a deployment that switches artifacts needs
no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.errors import StateError
from core.manifest import StateManifest, StateSpec


def _convert(states: Mapping[str, np.ndarray], manifest: StateManifest, *, to_4d: bool,
             ) -> dict[str, np.ndarray]:
    def garden(spec: StateSpec) -> tuple[int, ...]:
        return spec.model_garden_shape or spec.shape

    def own(spec: StateSpec) -> tuple[int, ...]:
        return spec.shape

    given_shape, wanted_shape = (garden, own) if to_4d else (own, garden)
    missing = sorted({s.name for s in manifest.states} - set(states))
    if missing:
        raise StateError(f"missing state {missing[0]!r} ({len(missing)} missing in all)")
    out = {}
    for spec in manifest.states:
        value = np.asarray(states[spec.name])
        if value.shape != tuple(given_shape(spec)):
            raise StateError(f"state {spec.name!r} has shape {list(value.shape)}, expected "
                             f"{list(given_shape(spec))} to convert it")
        dtype = spec.dtype if to_4d else (spec.model_garden_dtype or spec.dtype)
        out[spec.name] = value.reshape(wanted_shape(spec)).astype(dtype, copy=False)
    return out


def to_four_d(states: Mapping[str, np.ndarray], manifest: StateManifest) -> dict[str, np.ndarray]:
    """Model Garden's states (a 5-D artifact's, or TensorFlow's) as the 4-D artifact of
    `manifest` takes them. Raises StateError for a missing or mis-shaped state."""
    return _convert(states, manifest, to_4d=True)


def to_model_garden(states: Mapping[str, np.ndarray],
                    manifest: StateManifest) -> dict[str, np.ndarray]:
    """The states of the 4-D artifact of `manifest` as Model Garden (and every 5-D artifact)
    holds them. Raises StateError for a missing or mis-shaped state."""
    return _convert(states, manifest, to_4d=False)
