"""Answering: a question prepared once (query.py), hybrid search over a PassageStore with
fusion and re-ranking (search.py), and the Answerer that turns a question and the chat's
earlier questions into an Answer of quotes, highlighted sentences and answer spans, or a
decline (answer.py). Conversation state and follow-up rewriting belong here. It may import the
index (through PassageStore), the models, the corpus and the basics, never the web, the tools
or a front end."""
