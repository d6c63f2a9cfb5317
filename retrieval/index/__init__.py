"""The index: immutable segments of passages on disk (segments.py) with their FAISS vectors,
BM25 postings (postings.py, keyword.py) and word sets (terms.py), the index folder and its
manifest (folder.py), the storage seam that searching and answering use (store.py:
PassageStore, open_store) and the incremental rebuild behind tanya-reindex (reindex.py). A new
store behind PassageStore goes here, one module per backend. It may import the models (to
embed passages), the corpus and the basics, never answering, the web or the tools."""

import logging

# FAISS is imported when an index is first built or opened, after the commands have set up
# logging: its loader's INFO lines (each CPU build it tries) would reach the user's terminal.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
