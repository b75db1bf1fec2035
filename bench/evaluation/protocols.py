"""Evaluation protocols: the one place their names are defined, parsed and run.

- `stream` / `stream:C=4`: the whole video through a causal model in chunks of C frames
  (default 1), states carried; the prediction is the logits after the last frame, and the
  logits after every chunk are kept as a trace.
- `full-clip`: all T frames as one view: one call for a model that takes T frames (a causal
  model starts from fresh states), otherwise streamed in the steps the session takes.
- `multi-clip:KxL`: K evenly spaced subclips of L frames (overlapping when K·L > T), each from
  fresh states (causal) or through `predict` (base); softmax probabilities averaged.
- `:3crop` (multi-clip and full-clip): also three spatial crops along the long side of frames
  resized to the model resolution on their short side; probabilities averaged over all views.

Protocols only call the `runtimes.base.Session` interface, so every runtime plugs in. A session
with a fixed `frames_per_call` (a TFLite stream artifact: 1; a base clip artifact: L) is fed in
steps of that size; where that cannot work, `ProtocolUnsupportedError` says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from core.errors import MovibenchError
from runtimes.base import Session

STREAM, FULL_CLIP, MULTI_CLIP = "stream", "full-clip", "multi-clip"
PROTOCOL_KINDS = (STREAM, FULL_CLIP, MULTI_CLIP)
THREE_CROP = "3crop"
PROTOCOL_HELP = ("stream, stream:C=<chunk>, full-clip, full-clip:3crop, multi-clip:<K>x<L>, "
                 "multi-clip:<K>x<L>:3crop")

# At most 9 digits: int() of a longer run is either huge (rejected below) or slow and capped.
_STREAM_RE = re.compile(r"^stream(?::c=(\d{1,9}))?$")
_FULL_RE = re.compile(r"^full-clip(?::(3crop))?$")
_MULTI_RE = re.compile(r"^multi-clip:(\d{1,9})x(\d{1,9})(?::(3crop))?$")


class ProtocolError(MovibenchError, ValueError):
    """A protocol name that does not parse, or parameters out of range."""


class ProtocolUnsupportedError(MovibenchError):
    """A protocol that cannot run on a given session (e.g. stream on a base model)."""


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol. `chunk` is for stream; `clips` (K) and `clip_frames` (L) for
    multi-clip; `crops` is 1 (centre) or 3 (spatial 3-crop)."""

    kind: str
    chunk: int = 1
    clips: int = 1
    clip_frames: int | None = None
    crops: int = 1

    @property
    def name(self) -> str:
        """The canonical name (what `parse_protocol` reads back to an equal Protocol)."""
        return format_protocol(self)

    @property
    def lazy(self) -> bool:
        """True when the protocol consumes frames as they decode (constant memory)."""
        return self.kind == STREAM

    def __str__(self) -> str:
        return self.name


# Beyond these a protocol is a typo, not a benchmark: 10,000 frames of one view is 6.6 min
# of 25 fps video held in memory at once (a clip is materialised), 1,000 views per video.
MAX_PROTOCOL_FRAMES = 10_000
MAX_PROTOCOL_CLIPS = 1_000


def parse_protocol(text: str) -> Protocol:
    """'stream', 'stream:C=4', 'full-clip', 'multi-clip:4x8', 'multi-clip:4x8:3crop' → Protocol."""
    if not isinstance(text, str):
        raise ProtocolError(f"a protocol is a name like 'stream', got {text!r}")
    key = text.strip().lower().replace(" ", "")
    if m := _STREAM_RE.match(key):
        chunk = int(m.group(1) or 1)
        if not 1 <= chunk <= MAX_PROTOCOL_FRAMES:
            raise ProtocolError(f"protocol {text!r}: chunk size C must be >= 1 and <= "
                                f"{MAX_PROTOCOL_FRAMES}")
        return Protocol(STREAM, chunk=chunk)
    if m := _FULL_RE.match(key):
        return Protocol(FULL_CLIP, crops=3 if m.group(1) else 1)
    if m := _MULTI_RE.match(key):
        clips, frames = int(m.group(1)), int(m.group(2))
        if clips < 1 or frames < 1:
            raise ProtocolError(f"protocol {text!r}: K and L must be >= 1")
        if clips > MAX_PROTOCOL_CLIPS or frames > MAX_PROTOCOL_FRAMES:
            raise ProtocolError(f"protocol {text!r}: K must be <= {MAX_PROTOCOL_CLIPS} and L "
                                f"<= {MAX_PROTOCOL_FRAMES}")
        return Protocol(MULTI_CLIP, clips=clips, clip_frames=frames, crops=3 if m.group(3) else 1)
    hint = ""
    if key.startswith("multi-clip"):
        hint = " (multi-clip needs K x L, e.g. multi-clip:4x8)"
    elif key.startswith("stream:"):
        hint = " (stream takes a chunk size, e.g. stream:C=4)"
    raise ProtocolError(f"unknown protocol {text!r}{hint}; known: {PROTOCOL_HELP}")


def format_protocol(protocol: Protocol) -> str:
    """The canonical name of `protocol`; used in CLI output and result columns."""
    crop = f":{THREE_CROP}" if protocol.crops == 3 else ""
    if protocol.kind == STREAM:
        return STREAM if protocol.chunk == 1 else f"{STREAM}:C={protocol.chunk}"
    if protocol.kind == FULL_CLIP:
        return FULL_CLIP + crop
    if protocol.kind == MULTI_CLIP:
        return f"{MULTI_CLIP}:{protocol.clips}x{protocol.clip_frames}{crop}"
    raise ProtocolError(f"unknown protocol kind {protocol.kind!r}")


def subclip_starts(total: int, clips: int, length: int) -> list[int]:
    """First frame of each of `clips` subclips of `length` frames in a `total`-frame video.

    Evenly spaced from the first frame to the last possible start, so they overlap when
    clips·length > total and leave gaps when it is smaller; one clip is centred. A video
    shorter than `length` gives one start, 0 (the clip is padded, see `take_subclip`).
    """
    if total < 1 or clips < 1 or length < 1:
        raise ProtocolError(f"need total, clips, length >= 1, got {total}, {clips}, {length}")
    last = total - length
    if last <= 0:
        return [0]
    if clips == 1:
        return [last // 2]
    return [round(i * last / (clips - 1)) for i in range(clips)]


def take_subclip(frames: np.ndarray, start: int, length: int) -> np.ndarray:
    """frames[start:start+length], padded by repeating the last frame when the video is short."""
    clip = frames[start:start + length]
    if clip.shape[0] < length:
        pad = np.repeat(clip[-1:], length - clip.shape[0], axis=0)
        clip = np.concatenate([clip, pad])
    return clip


def crop_offsets(long_side: int, size: int, crops: int) -> list[int]:
    """Offsets of `crops` (1 or 3) windows of `size` along a side of `long_side` pixels:
    centre, or start/centre/end. Identical windows (a square frame) collapse into one."""
    if long_side < size:
        raise ProtocolError(f"frame side {long_side} is smaller than crop {size}")
    middle = (long_side - size) // 2
    offsets = [middle] if crops == 1 else [0, middle, long_side - size]
    return sorted(set(offsets))


def spatial_views(frames: np.ndarray, size: int, crops: int) -> list[np.ndarray]:
    """Square [T, size, size, 3] views of frames [T, H, W, 3] whose short side is `size`."""
    height, width = frames.shape[1:3]
    if height == size == width:
        return [frames]
    if width >= height:
        return [frames[:, :size, o:o + size] for o in crop_offsets(width, size, crops)]
    return [frames[:, o:o + size, :size] for o in crop_offsets(height, size, crops)]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class ProtocolOutput:
    """What one protocol said about one video, and what it cost in model work.

    `frames_processed` counts frames through the model (overlapping subclips and crops count
    every time); `trace` holds the logits after every model call of `stream`, with
    `trace_frames` the number of frames seen at each.
    """

    protocol: str
    probs: np.ndarray
    logits: np.ndarray | None
    frames_decoded: int
    frames_processed: int
    model_calls: int
    views: int
    trace: np.ndarray | None = None
    trace_frames: np.ndarray | None = None

    @property
    def prediction(self) -> int:
        return int(np.argmax(self.probs))


def check_supported(protocol: Protocol, session: Session) -> None:
    """Raise ProtocolUnsupportedError when `protocol` can never run on `session`, whatever
    the video (frame-count-dependent limits are raised per video by `run_protocol`)."""
    m = session.manifest
    fixed = m.frames_per_call
    what = f"{m.model_id}/{m.variant} {m.format} artifact"
    if protocol.kind == STREAM:
        if not m.causal:
            raise ProtocolUnsupportedError(
                f"{protocol.name} needs a causal model with states; {what} is a base model "
                "(use full-clip or multi-clip)")
        if fixed is not None and protocol.chunk % fixed:
            raise ProtocolUnsupportedError(
                f"{protocol.name}: chunks of {protocol.chunk} frames do not split into the "
                f"{fixed}-frame steps the {what} takes")
    elif protocol.kind == MULTI_CLIP and fixed is not None:
        length = protocol.clip_frames
        if not m.causal and length != fixed:
            raise ProtocolUnsupportedError(
                f"{protocol.name} needs {length}-frame clips but the {what} is compiled for "
                f"exactly {fixed} frames (use multi-clip:Kx{fixed})")
        if m.causal and length % fixed:
            raise ProtocolUnsupportedError(
                f"{protocol.name}: {length}-frame clips do not split into the {fixed}-frame "
                f"steps the {what} takes")


def _run_clip(session: Session, clip: np.ndarray) -> tuple[np.ndarray, int]:
    """Logits of one view [T, H, W, 3] from fresh states; returns (logits, model calls)."""
    m = session.manifest
    total = clip.shape[0]
    fixed = m.frames_per_call
    batch = np.ascontiguousarray(clip[None], dtype=np.float32)
    if fixed is None or fixed == total:
        return np.asarray(session.predict(batch)).reshape(-1), 1
    if not m.causal:
        raise ProtocolUnsupportedError(
            f"a {total}-frame view cannot run on the {m.model_id}/{m.variant} {m.format} artifact, "
            f"compiled for exactly {fixed} frames")
    if total % fixed:
        raise ProtocolUnsupportedError(
            f"a {total}-frame view does not split into the {fixed}-frame steps the {m.format} "
            "artifact takes")
    states = session.init_states()
    logits = None
    for start in range(0, total, fixed):
        logits, states = session.step(batch[:, start:start + fixed], states)
    return np.asarray(logits).reshape(-1), total // fixed


def _chunked(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    buffer: list[np.ndarray] = []
    for frame in frames:
        buffer.append(frame)
        if len(buffer) == size:
            yield np.stack(buffer)[None]
            buffer = []
    if buffer:
        yield np.stack(buffer)[None]


def run_stream(protocol: Protocol, session: Session, frames: Iterable[np.ndarray]) -> ProtocolOutput:
    """`stream`: consume frames [H, W, 3] lazily in chunks, carrying states."""
    check_supported(protocol, session)
    fixed = session.manifest.frames_per_call
    # A fixed-step artifact takes its own step size; C is then a multiple of it (checked).
    step = fixed if fixed is not None else protocol.chunk
    states = session.init_states()
    rows, seen = [], []
    count = 0
    for chunk in _chunked(frames, step):
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if fixed is not None and chunk.shape[1] != fixed:
            raise ProtocolUnsupportedError(
                f"the video's last {chunk.shape[1]} frame(s) do not fill a {fixed}-frame step "
                f"of the {session.manifest.format} artifact")
        logits, states = session.step(chunk, states)
        count += chunk.shape[1]
        rows.append(np.asarray(logits).reshape(-1))
        seen.append(count)
    if not rows:
        raise ProtocolUnsupportedError("the video yielded no frames")
    trace = np.stack(rows)
    return ProtocolOutput(protocol.name, softmax(trace[-1]), trace[-1], count, count, len(rows),
                          1, trace, np.asarray(seen, np.int32))


def run_protocol(protocol: Protocol, session: Session,
                 frames: np.ndarray | Iterable[np.ndarray]) -> ProtocolOutput:
    """Run `protocol` on one video's frames through `session`.

    `frames` is [T, H, W, 3] float32 in [0, 1] (or, for stream, any iterable of frames).
    Frames are square at the model resolution, or — for `:3crop` — resized so their short side
    is the resolution (decode with crop="none").
    """
    if protocol.kind == STREAM:
        return run_stream(protocol, session, frames)
    check_supported(protocol, session)
    frames = frames if isinstance(frames, np.ndarray) else np.stack(list(frames))
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ProtocolUnsupportedError(f"expected frames [T, H, W, 3], got {list(frames.shape)}")
    total = frames.shape[0]
    size = session.manifest.resolution
    if protocol.kind == FULL_CLIP:
        temporal = [frames]
    else:
        starts = subclip_starts(total, protocol.clips, protocol.clip_frames)
        temporal = [take_subclip(frames, s, protocol.clip_frames) for s in starts]
    probs, calls, processed, last_logits = [], 0, 0, None
    for clip in temporal:
        for view in spatial_views(clip, size, protocol.crops):
            logits, n = _run_clip(session, view)
            probs.append(softmax(logits))
            calls += n
            processed += view.shape[0]
            last_logits = logits
    single = len(probs) == 1
    return ProtocolOutput(protocol.name, np.mean(probs, axis=0), last_logits if single else None,
                          total, processed, calls, len(probs))
