"""The Telegram front end, on python-telegram-bot: talking to the Bot API with retries, flood
control and a watch on the token (transport.py), the token kept out of logs (logs.py), the
handlers that answer questions (handlers.py), the admins' commands and the feed timer
(admin.py), answers laid out as Telegram HTML (messages.py), and the Application put together
and run (app.py). It may import the rest of chat and retrieval below the tools; the console and
retrieval never import it."""
