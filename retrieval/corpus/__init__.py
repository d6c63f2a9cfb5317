"""The corpus: article files (.txt, .md, .jsonl) read into Articles with exact paragraph offsets
(articles.py), and Articles cut into sentence-aware Chunks (chunking.py). It is the bottom of
the pipeline: it may import only the basics (retrieval.config, retrieval.errors,
retrieval.safe_yaml), never the index, the models, answering, the web or the tools."""
