"""Resume without gaps, sans I/O: what a connection may be given, and when.

The session subscribes to the broker first, then replays from storage, then streams live. Live
events that arrive while the replay is read must wait behind it, and an event that is both in
storage and live must be given once. `DeliveryGate` decides both, per connection:

- While `holding` (from connect until the client's first `subscribe`, and during every replay),
  live envelopes are kept in arrival order, at most `hold_limit` of them (`HoldOverflow` beyond:
  the session closes the connection as a slow consumer).
- Replayed envelopes pass through `admit_replayed` (written while live ones are still held);
  then `release()` hands out the held ones and opens the gate.
- Everything handed out passes the duplicate check: a `message.created` envelope is keyed by
  (conversation, seq) and given at most once. Other frames (edits, statuses, typing) carry no
  key and always pass: they are idempotent for the client.
- Per conversation, a `SeqWindow` remembers which seqs were given: everything up to `floor`, and
  a bounded set above it. Replicas publish independently, so seq 8 may arrive before seq 7: the
  window is a set, never a maximum, or 7 would be dropped and leave a gap. A conversation the
  client gave no position for starts its window `REORDER_SLACK` below the first seq seen.
"""

from __future__ import annotations

import attrs

from cellchat.chat.realtime.broker import Envelope

REORDER_SLACK = 64


class HoldOverflow(Exception):
    """More live envelopes arrived while holding than the connection may keep."""


@attrs.define
class SeqWindow:
    floor: int = 0
    above: set[int] = attrs.field(factory=set)
    limit: int = 256

    def add(self, seq: int) -> bool:
        """Record `seq`; False if it was given before."""
        if seq <= self.floor or seq in self.above:
            return False
        self.above.add(seq)
        if len(self.above) > self.limit:
            # Holes this far behind will not be filled live any more: stop waiting for them.
            self.floor = max(self.floor, min(self.above) - 1)
        while self.floor + 1 in self.above:
            self.floor += 1
            self.above.discard(self.floor)
        return True


@attrs.define
class DeliveryGate:
    hold_limit: int
    holding: bool = True
    _held: list[Envelope] = attrs.field(factory=list)
    _windows: dict[str, SeqWindow] = attrs.field(factory=dict)

    def live(self, envelope: Envelope) -> list[Envelope]:
        """A live envelope arrived: what to send now (possibly nothing)."""
        if self.holding:
            if len(self._held) >= self.hold_limit:
                raise HoldOverflow
            self._held.append(envelope)
            return []
        return [envelope] if self._admit(envelope) else []

    def hold(self) -> None:
        """A replay starts: keep live envelopes back until `release`."""
        self.holding = True

    def position(self, conversation_id: str, seq: int) -> None:
        """The client has everything of `conversation_id` up to `seq` (and nothing after it
        that this gate should assume)."""
        self._windows[conversation_id] = SeqWindow(floor=seq)

    def admit_replayed(self, envelope: Envelope) -> bool:
        """A replayed envelope (read from storage while holding): give it, unless already given."""
        return self._admit(envelope)

    def release(self) -> list[Envelope]:
        """The replay is written: the held envelopes minus duplicates; the gate opens."""
        out = [e for e in self._held if self._admit(e)]
        self._held.clear()
        self.holding = False
        return out

    @property
    def held(self) -> int:
        return len(self._held)

    def _admit(self, envelope: Envelope) -> bool:
        if envelope.seq <= 0:
            return True
        window = self._windows.get(envelope.conversation_id)
        if window is None:
            window = SeqWindow(floor=max(0, envelope.seq - 1 - REORDER_SLACK))
            self._windows[envelope.conversation_id] = window
        return window.add(envelope.seq)
