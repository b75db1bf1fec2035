"""The TensorFlow reference runtime: the Model Garden model behind a traced step function."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.manifest import StateManifest
from core.zoo import ModelConfig
from runtimes.base import Session, States


def set_threads(threads: int | None) -> None:
    """Pin TF's thread pools; effective only before TF runs its first op in this process."""
    if not threads:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised: the process keeps its first setting


class TensorFlowSession(Session):
    """Runs a Keras MovinetClassifier through a `tf.function` (eager calls are ~30x slower).

    Accepts any number of frames per call, so chunk sizes 1..C and whole clips share one trace
    per distinct T. Built by `from_config` (runtimes.loader.open_model, for the formats this
    runtime runs): the reference has no artifact, so `open` refuses its format by name.
    """

    runtime = "tensorflow"
    engine_name = "TensorFlow"
    engine_modules = ("tensorflow", "official.projects.movinet.modeling.movinet_model")
    distribution = "tensorflow"

    def __init__(self, model, manifest: StateManifest):
        from core.build import step_function

        super().__init__(manifest)
        self.model = model
        self._fn = step_function(model, manifest, frames=None)
        self._specs = manifest.states

    @classmethod
    def from_config(cls, config: ModelConfig, checkpoint: str | Path | None = None, *,
                    threads: int | None = None, seed: int = 0) -> TensorFlowSession:
        """Build the model for `config`, optionally restoring `checkpoint`; `seed` draws the
        weights of a random init."""
        set_threads(threads)
        from core.build import build_model, load_checkpoint, make_manifest

        config = config.resolved()
        model = build_model(config, seed=seed)
        ckpt_hash = load_checkpoint(model, checkpoint) if checkpoint else ""
        return cls(model, make_manifest(model, config, ckpt_hash))

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        out = self._fn(frames, *(states[s.name] for s in self._specs))
        next_states = {s.name: out[s.output_name].numpy() for s in self._specs}
        return out["logits"].numpy(), next_states

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        return self._fn(clip)["logits"].numpy()
