"""Stream states kept in two sets of engine-owned buffers that the steps write in turn.

A step reads its states from the set the step before wrote and writes its next states into the
other set, so carrying the stream buffers (2.7 MB in 43 tensors for A0 at 172²) costs no copy
through Python: the `buffers` state I/O of a runtime (`STATE_IO`).

The ownership rule that keeps the session contract — a state handed out is never overwritten
behind its holder's back — is copy-on-reuse: before a step writes into a set, every handle
issued from that set that is still referenced anywhere is detached, its value copied to host
memory, which it keeps from then on. A streaming loop (`states = session.step(x, states)[1]`)
has dropped the states of two steps ago by then and pays no copy; a caller who keeps old
states pays one copy of what it keeps, at the moment it would otherwise be overwritten.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import MovibenchError
from core.manifest import StateSpec
from runtimes.base import StateHandle

# A runtime's state I/O modes (the `state_io` option of LiteRT and OpenVINO sessions):
# 'host': states are numpy arrays, copied into the engine and out of it at every step, as a
# user's own loop over the engine's plain call does; 'buffers': this module's ping-pong sets.
STATE_IO_HOST = "host"
STATE_IO_BUFFERS = "buffers"
STATE_IO = (STATE_IO_HOST, STATE_IO_BUFFERS)


def check_state_io(runtime: str, value: str) -> str:
    """`value` if it is a state I/O mode, else a one-line MovibenchError naming `runtime`."""
    if value not in STATE_IO:
        raise MovibenchError(f"unknown {runtime} state_io {value!r}; known: {', '.join(STATE_IO)}")
    return value


class BufferedState(StateHandle):
    """A state in one of a session's two buffer sets, or, once detached, in host memory."""

    def __init__(self, owner: StateBuffers, slot: int, spec: StateSpec):
        self._owner = owner
        self._slot: int | None = slot
        self._host: np.ndarray | None = None
        self.spec = spec
        self.shape = tuple(spec.shape)
        self.dtype = np.dtype(spec.dtype)

    @property
    def detached(self) -> bool:
        """True once its value was copied out because its buffer was about to be reused."""
        return self._slot is None

    def numpy(self) -> np.ndarray:
        if self._slot is None:
            return self._host.copy()
        return self._owner.read(self._slot, self.spec)

    def _detach(self) -> None:
        self._host = self._owner.read(self._slot, self.spec)
        self._slot = None


class StateBuffers:
    """Two sets of engine buffers for a manifest's states, handed out as `BufferedState`s.

    The engine side is three callables: `new_buffer(spec)` makes one output buffer,
    `read(buffer, spec)` copies one to a new host array of the spec's shape, and
    `host_input(spec, array)` gives a buffer holding `array` for a state that is not in a
    set (fresh states, a detached handle, another session's state).
    """

    def __init__(self, specs: Sequence[StateSpec], new_buffer: Callable[[StateSpec], Any],
                 read: Callable[[Any, StateSpec], np.ndarray],
                 host_input: Callable[[StateSpec, np.ndarray], Any]):
        self._specs = list(specs)
        self._sets = [{s.name: new_buffer(s) for s in self._specs} for _ in range(2)]
        self._read, self._host_input = read, host_input
        self._issued: list[list[weakref.ref]] = [[], []]
        self.detaches = 0  # handles detached so far: copies the ownership rule cost

    def read(self, slot: int, spec: StateSpec) -> np.ndarray:
        """The value of `spec`'s state in set `slot`, copied to the host."""
        return self._read(self._sets[slot][spec.name], spec)

    def inputs(self, states: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """(state name -> buffer to read, the set the next states go to) for a step on
        `states`, detaching what that set still holds.

        The next states go to the set no input is in. Inputs from both sets (a caller mixing
        states of two steps) take the second set's through host memory.
        """
        buffers, used = {}, set()
        for spec in self._specs:
            value = states[spec.name]
            if isinstance(value, BufferedState) and value._owner is self and not value.detached:
                buffers[spec.name] = self._sets[value._slot][spec.name]
                used.add(value._slot)
            else:
                buffers[spec.name] = self._host_input(spec, np.asarray(value))
        if len(used) == 2:
            for spec in self._specs:
                value = states[spec.name]
                if isinstance(value, BufferedState) and value._slot == 1 and value._owner is self:
                    buffers[spec.name] = self._host_input(spec, value.numpy())
            used = {0}
        slot = 1 if 0 in used else 0
        self._reclaim(slot)
        return buffers, slot

    def outputs(self, slot: int) -> dict[str, Any]:
        """State name -> the buffer of set `slot` a step writes that state's next value to."""
        return self._sets[slot]

    def issue(self, slot: int) -> dict[str, BufferedState]:
        """Handles on the states a step just wrote into set `slot`."""
        handles = {spec.name: BufferedState(self, slot, spec) for spec in self._specs}
        self._issued[slot] = [weakref.ref(h) for h in handles.values()]
        return handles

    def _reclaim(self, slot: int) -> None:
        """Detach every handle of set `slot` still referenced, before the set is written."""
        for ref in self._issued[slot]:
            handle = ref()
            if handle is not None and not handle.detached:
                handle._detach()
                self.detaches += 1
        self._issued[slot] = []
