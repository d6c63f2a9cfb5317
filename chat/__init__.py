"""The front ends: how people reach tanya. The Telegram bot (telegram/) and the console
(console.py) are thin adapters over retrieval's Answerer; what both share is here: a quote laid
out in runs with its source line (formatting.py), the language tables (texts.py) and each
chat's earlier questions (history.py). They may import retrieval (answering, the web for /add
and /refresh, the index for what the console reports, the corpus, the basics) but not
retrieval.tools; nothing in retrieval imports them. bot.py, the command line, sits on top."""
