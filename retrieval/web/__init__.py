"""The web: fetching pages politely within bounds (fetch.py: robots.txt, one request at a time
per host, size and time limits), articles out of pages (extract.py), and pages and feeds into
the corpus followed by a reindex, behind tanya-add and the bot's /add and /refresh (ingest.py;
which feeds are read, and what is one: feeds.py; files written whole: files.py).
Checks on where a fetch may go belong in fetch.py. It may import the index (to reindex), the
models, the corpus and the basics, never answering, the tools or a front end."""
