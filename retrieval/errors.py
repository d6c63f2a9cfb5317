"""The few named errors the core raises; adapters turn them into exit codes or replies."""


class TanyaError(Exception):
    """Base class: every message is meant to be shown to a user as it is."""


class ConfigError(TanyaError):
    """A config file is missing, unreadable, or has a bad key or value."""


class IndexMissingError(TanyaError):
    """There is no index where the config says it should be."""


class IndexMismatchError(TanyaError):
    """The index on disk was built with other settings than the config asks for."""


class IndexCorruptError(TanyaError):
    """The index folder exists but cannot be read."""


class ModelUnavailableError(TanyaError):
    """An embedding model cannot be loaded offline."""


class ReindexLockedError(TanyaError):
    """Another reindex holds the lock on this index."""


class QuestionError(TanyaError):
    """A question that cannot be asked: its kind is "not_text", "empty", "no_words" or
    "too_long" (then with its length and the most allowed), for adapters to say in a language."""

    def __init__(self, message: str, kind: str, length: int = 0, most: int = 0):
        super().__init__(message)
        self.kind = kind
        self.length = length
        self.most = most


class ReaderUnavailableError(TanyaError):
    """The reader's weights are missing or corrupt."""
