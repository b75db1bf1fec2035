"""Fine-tune (or train from scratch) a Model Garden MoViNet on decoded videos, on CPU.

Small datasets are decoded once and held in memory as uint8; a seeded per-epoch order feeds a
`tf.data` pipeline, so a resumed run sees exactly the batches the interrupted one would have.
Stream (causal) variants train on whole clips with zero initial states — the same network that
later streams frame by frame with those states carried. Two checkpoints are kept in `out`:

- `out/ckpt.*` + `movibench_model.json`: the model alone (core.build.save_checkpoint),
  what `eval`, `validate` and the exporters load;
- `out/train_state/`: model + optimizer + step, what `--resume` continues from.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from bench.data.datasets import Dataset, Sample, normalise_split
from bench.data.video import iter_frames
from core.errors import MovibenchError, VideoError
from core.zoo import ModelConfig, checkpoint_config

TRAIN_STATE_DIR = "train_state"
TRAIN_CONFIG_JSON = "train_config.json"
HISTORY_CSV = "history.csv"
CLASSES_TXT = "classes.txt"


class TrainError(MovibenchError):
    """A training run that cannot start or continue (bad options, no data, resume mismatch)."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `steps` wins over `epochs`; one of them is required."""

    model_id: str = "t0"
    variant: str = "stream"
    # None: the variant's default, except base, which trains with 2plus1d (3D conv backward
    # is unusable on CPU: 17 s/step vs 0.47 s for 2plus1d, a0 at 64², batch 8).
    conv_type: str | None = None
    resolution: int = 64
    frames: int = 32
    frame_stride: int = 1
    batch_size: int = 8
    epochs: int | None = None
    steps: int | None = None
    lr: float = 1e-3
    warmup_steps: int | None = None
    min_lr_fraction: float = 0.02
    clip_norm: float | None = 1.0
    # 0.99 (Model Garden's default) leaves moving statistics unsettled after a few hundred
    # steps and the model collapses to one class in inference mode (measured on t0).
    norm_momentum: float = 0.9
    flip: bool = True
    seed: int = 0
    train_split: str | None = "train"
    val_split: str | None = "val"
    init_checkpoint: str | None = None

    def model_config(self, num_classes: int) -> ModelConfig:
        """The architecture this run trains, with `num_classes` outputs."""
        conv_type = self.conv_type or ("2plus1d" if self.variant == "base" else None)
        return ModelConfig(self.model_id, self.variant, self.resolution, num_classes,
                           conv_type=conv_type, norm_momentum=self.norm_momentum).resolved()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochMetrics:
    """Metrics after one epoch (or the final partial epoch of a `steps` run)."""

    epoch: int
    step: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    seconds: float


@dataclass
class TrainResult:
    """Where a run left its checkpoints and what it measured."""

    out: Path
    checkpoint: str
    model_config: ModelConfig
    classes: tuple[str, ...]
    steps: int
    resumed_from_step: int
    history: list[EpochMetrics] = field(default_factory=list)
    skipped_videos: list[str] = field(default_factory=list)


@dataclass
class ClipCache:
    """Decoded clips in memory: uint8 [N, T, R, R, 3] with labels [N]."""

    clips: np.ndarray
    labels: np.ndarray
    failed: list[str]


def decode_clips(samples: tuple[Sample, ...] | list[Sample], resolution: int, frames: int,
                 stride: int = 1, progress: bool = True) -> ClipCache:
    """Decode the first `frames` frames (every `stride`-th) of each sample, once.

    A shorter video repeats its last frame; an undecodable one is left out and named in
    `failed` (training goes on without it).
    """
    clips, labels, failed = [], [], []
    iterator = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="decoding", unit="video", file=sys.stderr, leave=False)
    for sample in iterator:
        try:
            got = [np.round(f * 255.0).astype(np.uint8)
                   for f in iter_frames(sample.path, resolution, stride=stride, max_frames=frames)]
        except VideoError as exc:
            failed.append(f"{sample.path}: {exc}")
            continue
        got += [got[-1]] * (frames - len(got))
        clips.append(np.stack(got))
        labels.append(sample.label_index)
    if not clips:
        return ClipCache(np.zeros((0, frames, resolution, resolution, 3), np.uint8),
                         np.zeros((0,), np.int32), failed)
    return ClipCache(np.stack(clips), np.asarray(labels, np.int32), failed)


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _lr_schedule(config: TrainConfig, total_steps: int):
    import tf_keras

    warmup = config.warmup_steps
    if warmup is None:
        warmup = min(50, max(1, total_steps // 10))
    warmup = min(warmup, max(total_steps - 1, 0))
    # Linear warm-up then cosine decay: with a constant learning rate the loss spiked to ~3
    # now and then.
    return tf_keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.lr * 0.1 if warmup else config.lr,
        decay_steps=max(total_steps - warmup, 1),
        alpha=config.min_lr_fraction,
        warmup_target=config.lr if warmup else None,
        warmup_steps=warmup,
    )


def _load_init_checkpoint(model, model_config: ModelConfig, path: str) -> str:
    """Restore `path` into `model`; with a different class count, restore the backbone only."""
    from core.build import build_model, load_checkpoint

    saved = checkpoint_config(path)
    source_classes = saved.num_classes if saved else 600
    if source_classes == model_config.num_classes:
        return load_checkpoint(model, path)
    # A new head: load the checkpoint into its own architecture, then copy the backbone.
    twin_config = saved.resolved() if saved else ModelConfig.from_dict(
        {**model_config.to_dict(), "num_classes": source_classes}).resolved()
    twin = build_model(twin_config)
    digest = load_checkpoint(twin, path)
    model.backbone.set_weights(twin.backbone.get_weights())
    return digest


def _check_resume(out: Path, config: TrainConfig, classes: tuple[str, ...]) -> None:
    saved_path = out / TRAIN_CONFIG_JSON
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    # Only what changes the network or its data may not differ; length and LR may.
    for key in ("model_id", "variant", "conv_type", "resolution", "frames", "frame_stride",
                "batch_size", "norm_momentum", "seed"):
        if saved["train"].get(key) != getattr(config, key):
            raise TrainError(f"cannot resume {out}: it was trained with {key}="
                             f"{saved['train'].get(key)!r}, now {getattr(config, key)!r}")
    if tuple(saved["classes"]) != classes:
        raise TrainError(f"cannot resume {out}: its classes differ from this dataset's")


def train(config: TrainConfig, dataset: Dataset, out: str | Path, *, resume: bool = False,
          threads: int | None = None, progress: bool = True) -> TrainResult:
    """Train `config` on `dataset` (its train/val splits), writing checkpoints to `out`.

    Each epoch ends with a validation pass (inference mode, whole clips) and both checkpoints
    written. With `resume=True` a run continues from `out/train_state` at the step it reached,
    with the same data order; without it, an existing train_state is an error rather than
    something silently overwritten.
    """
    import tensorflow as tf
    import tf_keras

    from core.build import build_model, save_checkpoint
    from runtimes.tensorflow import set_threads

    set_threads(threads)
    out = Path(out)
    if config.steps is None and config.epochs is None:
        raise TrainError("give --epochs or --steps")
    if config.frames < 1 or config.batch_size < 1 or config.frame_stride < 1:
        raise TrainError("--frames, --batch-size and --frame-stride must be >= 1")
    train_set = dataset.split(config.train_split) if config.train_split else dataset
    val_set = None
    if config.val_split and any(s.split == normalise_split(config.val_split) for s in dataset.samples):
        val_set = dataset.split(config.val_split)
    classes = dataset.classes
    model_config = config.model_config(len(classes))

    state_dir = out / TRAIN_STATE_DIR
    has_state = tf.train.latest_checkpoint(str(state_dir)) is not None
    if has_state and not resume:
        raise TrainError(f"{out} already holds a training run; pass --resume to continue it "
                         "or choose another --out")
    if resume and has_state:
        _check_resume(out, config, classes)

    train_data = decode_clips(train_set.samples, config.resolution, config.frames,
                              config.frame_stride, progress)
    n = len(train_data.labels)
    if n < config.batch_size:
        raise TrainError(f"{n} decodable training videos, fewer than --batch-size {config.batch_size}")
    val_data = (decode_clips(val_set.samples, config.resolution, config.frames,
                             config.frame_stride, progress) if val_set else None)
    steps_per_epoch = n // config.batch_size
    total = config.steps if config.steps is not None else config.epochs * steps_per_epoch

    model = build_model(model_config, seed=config.seed)
    schedule = _lr_schedule(config, total)
    optimizer = tf_keras.optimizers.Adam(learning_rate=schedule,
                                         global_clipnorm=config.clip_norm)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    causal = model_config.causal

    def forward(x, training):
        if causal:
            states = model.init_states(tf.shape(x))
            logits, _ = model({**states, "image": x}, training=training)
            return logits
        return model(x, training=training)

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = forward(x, True)
            loss = loss_fn(y, logits)
            if model.losses:
                loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        return loss, correct

    @tf.function(reduce_retracing=True)
    def eval_step(x, y):
        logits = forward(x, False)
        loss = tf_keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return tf.reduce_sum(loss), tf.reduce_sum(correct)

    # Variables must exist before restore so every slot maps (Adam creates slots lazily).
    optimizer.build(model.trainable_variables)
    state = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(state, str(state_dir), max_to_keep=1)
    init_digest = ""
    if resume and has_state:
        state.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    elif config.init_checkpoint:
        init_digest = _load_init_checkpoint(model, model_config, config.init_checkpoint)
    start = int(optimizer.iterations.numpy())
    if start >= total:
        raise TrainError(f"{out} already reached step {start} of {total}; nothing to do")

    out.mkdir(parents=True, exist_ok=True)
    (out / CLASSES_TXT).write_text("\n".join(classes) + "\n")
    (out / TRAIN_CONFIG_JSON).write_text(json.dumps(
        {"train": config.to_dict(), "model": model_config.to_dict(), "classes": list(classes),
         "train_videos": n, "val_videos": len(val_data.labels) if val_data else 0,
         "steps_per_epoch": steps_per_epoch, "total_steps": total,
         "init_checkpoint_sha256": init_digest}, indent=2) + "\n")

    def batches(epoch: int, skip: int):
        order = _epoch_order(n, config.seed, epoch)
        rng = np.random.default_rng([config.seed, epoch, 1])
        flips = rng.random(n) < 0.5 if config.flip else np.zeros(n, bool)

        def gen():
            for b in range(skip, steps_per_epoch):
                idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                clips = train_data.clips[idx]
                # Mirror images: the label (a count of flashes, an action) does not change.
                clips = np.where(flips[idx, None, None, None, None], clips[:, :, :, ::-1], clips)
                yield clips, train_data.labels[idx]

        shape = (config.batch_size, config.frames, config.resolution, config.resolution, 3)
        ds = tf.data.Dataset.from_generator(gen, output_signature=(
            tf.TensorSpec(shape, tf.uint8), tf.TensorSpec((config.batch_size,), tf.int32)))
        return ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).prefetch(2)

    def validate() -> tuple[float | None, float | None]:
        if not val_data or not len(val_data.labels):
            return None, None
        loss_sum = correct = 0.0
        for i in range(0, len(val_data.labels), config.batch_size):
            x = tf.cast(val_data.clips[i:i + config.batch_size], tf.float32) / 255.0
            l, c = eval_step(x, tf.constant(val_data.labels[i:i + config.batch_size]))
            loss_sum += float(l)
            correct += float(c)
        return loss_sum / len(val_data.labels), correct / len(val_data.labels)

    history = _read_history(out / HISTORY_CSV) if resume else []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc=f"train {model_config.model_id}/{model_config.variant}",
                   unit="step", file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    step = start
    prefix = ""
    try:
        while step < total:
            epoch = step // steps_per_epoch
            began = time.perf_counter()
            loss_sum = correct = 0.0
            seen = 0
            in_epoch = step - epoch * steps_per_epoch
            last = min(total, (epoch + 1) * steps_per_epoch)
            for x, y in batches(epoch, in_epoch).take(last - step):
                loss, corr = train_step(x, y)
                step += 1
                seen += 1
                loss_sum += float(loss)
                correct += float(corr)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / seen:.3f}",
                                    acc=f"{correct / (seen * config.batch_size):.2f}", refresh=False)
            val_loss, val_acc = validate()
            lr = float(schedule(step))
            metrics = EpochMetrics(epoch + 1, step, lr, loss_sum / max(seen, 1),
                                   correct / max(seen * config.batch_size, 1), val_loss, val_acc,
                                   time.perf_counter() - began)
            history.append(metrics)
            prefix = save_checkpoint(model, model_config, out)
            manager.save(checkpoint_number=step)
            _write_history(out / HISTORY_CSV, history)
            if bar is not None:
                val = f", val loss {val_loss:.3f} acc {val_acc:.1%}" if val_acc is not None else ""
                bar.write(f"epoch {metrics.epoch}: step {step}, train loss {metrics.train_loss:.3f} "
                          f"acc {metrics.train_acc:.1%}{val}", file=sys.stderr)
    except KeyboardInterrupt:
        # Keep the progress made so far; --resume continues from here.
        manager.save(checkpoint_number=int(optimizer.iterations.numpy()))
        raise
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(out, prefix, model_config, classes, step, start, history, train_data.failed)


def _write_history(path: Path, history: list[EpochMetrics]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(EpochMetrics)])
        writer.writeheader()
        for row in history:
            writer.writerow(asdict(row))


def _read_history(path: Path) -> list[EpochMetrics]:
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            def num(key, cast=float):
                return cast(r[key]) if r[key] not in ("", "None") else None
            rows.append(EpochMetrics(int(r["epoch"]), int(r["step"]), float(r["lr"]),
                                     float(r["train_loss"]), float(r["train_acc"]),
                                     num("val_loss"), num("val_acc"), float(r["seconds"])))
    return rows

