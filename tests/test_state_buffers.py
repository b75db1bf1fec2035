"""State I/O through engine-owned buffers (runtimes.state_buffers), on LiteRT and OpenVINO.

The `buffers` step must give exactly the `host` step's logits and states (the same engine on the
same inputs), and the ownership rule must hold: a state handed out is never overwritten by a
later step, while a plain streaming loop pays no copy for it.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import MovibenchError
from runtimes.loader import open_session
from runtimes.state_buffers import BufferedState

from conftest import T0_STREAM

STEPS = 6


@pytest.fixture(params=["litert", "openvino"])
def artifact(request, t0_stream_tflite, t0_stream_openvino):
    return {"litert": t0_stream_tflite, "openvino": t0_stream_openvino}[request.param].path


def clip(n: int, seed: int = 0) -> list[np.ndarray]:
    r = T0_STREAM.resolution
    rng = np.random.default_rng(seed)
    return [rng.random((1, 1, r, r, 3), dtype=np.float32) for _ in range(n)]


def host_values(states) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in states.items()}


def test_buffers_stream_bit_for_bit_like_host_copies(artifact):
    frames = clip(STEPS)
    with open_session(artifact, threads=1, state_io="host") as host, \
            open_session(artifact, threads=1) as buffers:
        assert buffers.settings()["state_io"] == "buffers"
        assert host.settings()["state_io"] == "host"
        h, b = host.init_states(), buffers.init_states()
        for frame in frames:
            logits_h, h = host.step(frame, h)
            logits_b, b = buffers.step(frame, b)
            np.testing.assert_array_equal(logits_b, logits_h)
        assert all(isinstance(v, BufferedState) for v in b.values())
        assert all(isinstance(v, np.ndarray) for v in h.values())
        expected = host_values(h)
        for name, value in host_values(b).items():
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
        # A streaming loop drops the states of two steps ago: nothing was copied to keep them.
        assert _buffers(buffers).detaches == 0


def test_a_state_handed_out_is_never_overwritten(artifact):
    frames = clip(STEPS, seed=1)
    with open_session(artifact, threads=1) as session:
        states = session.init_states()
        kept = []  # every step's states, held while the stream goes on
        for frame in frames:
            _, states = session.step(frame, states)
            kept.append((states, host_values(states)))
        for held, values in kept:
            for name, value in held.items():
                np.testing.assert_array_equal(np.asarray(value), values[name], err_msg=name)
        # The states move on from step to step, so the check above could fail.
        first, last = kept[0][1], kept[-1][1]
        assert any(not np.array_equal(first[n], last[n]) for n in first)
        assert _buffers(session).detaches > 0


def test_old_or_mixed_states_give_what_host_copies_give(artifact):
    """States passed back out of order — an older step's, or two steps' mixed — are inputs
    like any other: the step on them equals the host step on their values."""
    frames = clip(4, seed=2)
    with open_session(artifact, threads=1, state_io="host") as host, \
            open_session(artifact, threads=1) as session:
        _, one = session.step(frames[0], session.init_states())
        _, two = session.step(frames[1], one)
        names = list(one)
        mixed = {n: (one if i % 2 else two)[n] for i, n in enumerate(names)}
        for states in (one, mixed, dict(host_values(two))):
            expected, expected_states = host.step(frames[2], host_values(states))
            logits, next_states = session.step(frames[2], states)
            np.testing.assert_array_equal(logits, expected)
            for name, value in host_values(next_states).items():
                np.testing.assert_array_equal(value, expected_states[name], err_msg=name)


def test_unknown_state_io_and_buffers_without_xnnpack_are_refused(t0_stream_tflite,
                                                                  t0_stream_openvino):
    for path in (t0_stream_tflite.path, t0_stream_openvino.path):
        with pytest.raises(MovibenchError, match="unknown .*state_io 'shared'"):
            open_session(path, state_io="shared")
    with pytest.raises(MovibenchError, match="state_io='host' with xnnpack=False"):
        open_session(t0_stream_tflite.path, xnnpack=False, state_io="buffers")


def _buffers(session):
    """The StateBuffers of a buffers-mode session of either runtime."""
    engine = getattr(session, "_engine", session)
    return engine._states
