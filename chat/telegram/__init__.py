"""The Telegram front end, on python-telegram-bot: answers laid out as Telegram HTML
(messages.py). It may import the rest of chat and retrieval below the tools; the console and
retrieval never import it."""
