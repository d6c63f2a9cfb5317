"""The index: immutable segments of passages on disk (segments.py) with their FAISS vectors,
BM25 postings (postings.py, keyword.py) and word sets (terms.py), the index folder and its
manifest (folder.py), the storage seam that searching and answering use (store.py:
PassageStore, open_store) and the incremental rebuild behind tanya-reindex (reindex.py). A new
store behind PassageStore goes here, one module per backend. It may import the models (to
embed passages), the corpus and the basics, never answering, the web or the tools."""
