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
  client gave no position for starts its window at the first seq seen, and still admits (once
  each) the `REORDER_SLACK` seqs below it, until the window has moved on by its limit.
- A gate is kept per connection, tens of thousands per replica: its lists, dicts and sets are
  created only when something needs them.
"""

from __future__ import annotations

import attrs

from cellchat.chat.realtime.broker import Envelope

REORDER_SLACK = 64


class HoldOverflow(Exception):
    """More live envelopes arrived while holding than the connection may keep."""


class SeqWindow:
    """The seqs of one conversation given to one connection (see the module rules).

    Everything up to `floor` was given (or given up on); `above` holds the seqs given beyond
    it, at most `limit`. Below a first sighting (`slack_from`), seqs in
    (`slack_from`, `slack_to`] may still arrive late, once each, until the window has moved
    `limit` past them. In-order delivery, the common case, only moves `floor`: no set is
    created, so the window of a conversation that streams in order is three integers."""

    __slots__ = ("_above", "_late", "floor", "limit", "slack_from", "slack_to")

    def __init__(self, floor: int = 0, limit: int = 256, *, slack: int = 0) -> None:
        self.floor = floor
        self.limit = limit
        self.slack_from = max(0, floor - slack)
        self.slack_to = floor
        self._above: set[int] | None = None
        self._late: set[int] | None = None

    @property
    def above(self) -> frozenset[int]:
        return frozenset(self._above or ())

    def add(self, seq: int) -> bool:
        """Record `seq`; False if it was given before."""
        floor = self.floor
        if seq <= floor:
            return self._add_late(seq)
        above = self._above
        if seq == floor + 1 and not above:
            self.floor = seq
            if self.slack_to and seq - self.slack_to > self.limit:
                self.slack_from = self.slack_to = 0
                self._late = None
            return True
        if above is None:
            above = self._above = set()
        elif seq in above:
            return False
        above.add(seq)
        if len(above) > self.limit:
            # Holes this far behind will not be filled live any more: stop waiting for them.
            self.floor = max(self.floor, min(above) - 1)
        while self.floor + 1 in above:
            self.floor += 1
            above.discard(self.floor)
        if not above:
            self._above = None
        return True

    def _add_late(self, seq: int) -> bool:
        if not self.slack_from < seq <= self.slack_to:
            return False
        late = self._late
        if late is None:
            self._late = {seq}
        elif seq in late:
            return False
        else:
            late.add(seq)
        return True


@attrs.define
class DeliveryGate:
    hold_limit: int
    holding: bool = True
    _held: list[Envelope] | None = attrs.field(default=None, init=False)
    _windows: dict[str, SeqWindow] | None = attrs.field(default=None, init=False)

    @property
    def open(self) -> bool:
        """Not holding: `admit` decides alone (the hub's fast path)."""
        return not self.holding

    def live(self, envelope: Envelope) -> list[Envelope]:
        """A live envelope arrived: what to send now (possibly nothing)."""
        if self.holding:
            held = self._held
            if held is None:
                held = self._held = []
            if len(held) >= self.hold_limit:
                raise HoldOverflow
            held.append(envelope)
            return []
        return [envelope] if self.admit(envelope) else []

    def hold(self) -> None:
        """A replay starts: keep live envelopes back until `release`."""
        self.holding = True

    def position(self, conversation_id: str, seq: int) -> None:
        """The client has everything of `conversation_id` up to `seq` (and nothing after it
        that this gate should assume)."""
        if self._windows is None:
            self._windows = {}
        self._windows[conversation_id] = SeqWindow(floor=seq)

    def admit_replayed(self, envelope: Envelope) -> bool:
        """A replayed envelope (read from storage while holding): give it, unless already given."""
        return self.admit(envelope)

    def release(self) -> list[Envelope]:
        """The replay is written: the held envelopes minus duplicates; the gate opens."""
        held, self._held = self._held, None
        self.holding = False
        return [e for e in held if self.admit(e)] if held else []

    @property
    def held(self) -> int:
        return len(self._held) if self._held is not None else 0

    def admit(self, envelope: Envelope) -> bool:
        """Whether `envelope` may be given (and record it if so): the duplicate check."""
        if envelope.seq <= 0:
            return True
        windows = self._windows
        if windows is None:
            windows = self._windows = {}
        window = windows.get(envelope.conversation_id)
        if window is None:
            window = SeqWindow(floor=envelope.seq - 1, slack=REORDER_SLACK)
            windows[envelope.conversation_id] = window
        return window.add(envelope.seq)
