"""The tools that measure and train, run by hand rather than by the bot: answer quality on a
question file (evaluate.py), speed and memory (bench.py, its archive section in bench_archive.py,
what the sections share in measuring.py), and training the reader's weights (train_reader.py),
each a `python -m retrieval.tools.…` command. They may import anything in retrieval (answering,
the web, the index, the models, the corpus, the basics); nothing in retrieval imports them, and,
as all of retrieval, they never import a front end (chat, bot.py) or telegram."""
