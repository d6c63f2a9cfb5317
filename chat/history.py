"""What each chat asked before, and how it was answered, kept for follow-up questions."""

from __future__ import annotations

from collections import OrderedDict, deque

from retrieval.answering.conversation import Turn

# Memory bounds: chats with a history, users with a rate-limit window, chats refused.
MAX_CHATS = 10_000


class ChatHistories:
    """The last few turns of each chat, bounded in turns per chat and in chats."""

    def __init__(self, size: int, max_chats: int = MAX_CHATS):
        self.size = size
        self.max_chats = max_chats
        self._chats: OrderedDict[int, deque[Turn]] = OrderedDict()

    def earlier(self, chat_id: int) -> tuple[Turn, ...]:
        """The chat's earlier turns, oldest first."""
        return tuple(self._chats.get(chat_id, ()))

    def record(self, chat_id: int, turn: Turn) -> None:
        """Remember a turn of the chat (the oldest turn and the least recent chat go first)."""
        if self.size == 0:
            return
        history = self._chats.pop(chat_id, None) or deque(maxlen=self.size)
        history.append(turn)
        self._chats[chat_id] = history
        while len(self._chats) > self.max_chats:
            self._chats.popitem(last=False)

    def forget(self, chat_id: int) -> None:
        """Drop the chat's turns."""
        self._chats.pop(chat_id, None)
