"""Answers to recent requests, for their duplicates (RFC 7252 §4.5), without aiocoap.

A Confirmable request whose ACK was lost comes again with the same message ID; it must get the same
answer, not be handled twice (an EST request would issue a second certificate). The direct lane
keeps one of these per DTLS session, a simulated device one per connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RecentAnswers"]


class RecentAnswers(OrderedDict[int, bytes | None]):
    """Message ID → encoded answer (``None`` while it is being made), the last ``limit`` of them."""

    def __init__(self, limit: int = 16) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, mid: int, answer: bytes | None) -> None:
        """Keep ``answer`` for duplicates of ``mid``, forgetting the oldest beyond ``limit``."""
        self[mid] = answer
        self.move_to_end(mid)
        while len(self) > self.limit:
            self.popitem(last=False)

    def replay(self, mid: int, send: Callable[[bytes], None]) -> bool:
        """If ``mid`` was seen: send its answer again (nothing while it is being made) and return
        True; otherwise False."""
        if mid not in self:
            return False
        answer = self[mid]
        if answer is not None:
            send(answer)
        return True

    def answered(self, mid: int, answer: bytes) -> None:
        """The answer to ``mid`` is made: keep it if ``mid`` is still remembered."""
        if mid in self:
            self.remember(mid, answer)
