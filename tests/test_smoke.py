"""End to end on the shipped article with the real default model."""


def test_handshake_question_quotes_the_caption(seed_answerer):
    answer = seed_answerer.ask("Siapa yang berjabat tangan dengan Kim Jong Un?")
    assert not answer.declined
    first = answer.quotes[0]
    assert first.kind == "caption"
    assert "Sergei Shoigu" in first.highlight


def test_out_of_scope_question_declines(seed_answerer):
    answer = seed_answerer.ask("Berapa harga beras di Jakarta hari ini?")
    assert answer.declined


def test_tiny_index_answers_with_fake_embedder(tiny_answerer):
    answer = tiny_answerer.ask("Berapa harga cabai rawit di Pasar Minggu?")
    assert answer.quotes[0].doc_id == "pasar"
    assert "Rp80.000" in answer.quotes[0].highlight
