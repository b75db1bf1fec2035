"""The TOML of the tiny matrices the matrix, Ray and run-directory tests run (t0 stream,
synthetic videos): one place, so the three stay the same shape."""

from __future__ import annotations


def tiny_matrix(name: str, formats: list[str], protocols: list[str], *, threads=(1,),
                resolution: int = 32, classes: int = 2, frames: int = 8, seed: int = 11,
                timeout_s: int = 600) -> str:
    """A matrix config: one t0 stream model with `classes` classes at `resolution`², timed
    with 1 warm-up and 5 iterations, on two synthetic validation videos of `frames` frames
    per class."""
    quoted = lambda items: ", ".join(f'"{i}"' for i in items)  # noqa: E731
    return f"""
name = "{name}"

[[models]]
model = "t0"
variant = "stream"
resolution = {resolution}
classes = {classes}

[axes]
formats = [{quoted(formats)}]
threads = [{", ".join(str(t) for t in threads)}]
protocols = [{quoted(protocols)}]

[timing]
warmup = 1
iterations = 5
cell_timeout_s = {timeout_s}

[data]
split = "val"
synth = {{ classes = {classes}, videos_per_class = 2, frames = {frames}, size = {resolution}, seed = {seed}, val_fraction = 0.5 }}
"""
