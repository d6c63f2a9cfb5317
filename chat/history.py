"""What each chat asked before, kept for follow-up questions."""

from __future__ import annotations

from collections import OrderedDict, deque

# Memory bounds: chats with a history, users with a rate-limit window, chats refused.
MAX_CHATS = 10_000


class ChatHistories:
    """The last few questions of each chat, bounded in questions per chat and in chats."""

    def __init__(self, size: int, max_chats: int = MAX_CHATS):
        self.size = size
        self.max_chats = max_chats
        self._chats: OrderedDict[int, deque[str]] = OrderedDict()

    def record(self, chat_id: int, question: str) -> tuple[str, ...]:
        """The chat's earlier questions (oldest first), then remember this one."""
        if self.size == 0:
            return ()
        history = self._chats.pop(chat_id, None) or deque(maxlen=self.size)
        earlier = tuple(history)
        history.append(question)
        self._chats[chat_id] = history
        while len(self._chats) > self.max_chats:
            self._chats.popitem(last=False)
        return earlier
