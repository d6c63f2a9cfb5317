"""Training the reader on the CPU: a few examples through pack, train, checkpoint and export,
and the exported weights read by the numpy reader as PyTorch computes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.reader import Reader, pack_weights, widen, windows
from retrieval.train_reader import Example, main, pack, torch_model

from .conftest import SEED_ARTICLE

torch = pytest.importorskip("torch")

SEED_TEXT = SEED_ARTICLE.read_text("utf-8").replace("\r\n", "\n")
PARAGRAPHS = [p for p in SEED_TEXT.split("\n\n") if len(p) > 80]


def example(question: str, answer: str | None, passage: str, key: str) -> Example:
    start = passage.index(answer) if answer else None
    end = start + len(answer) if answer else None
    return Example(question, passage, start, end, "seed", key)


def examples() -> tuple[list[Example], list[Example]]:
    caption, body = PARAGRAPHS[0], PARAGRAPHS[2]
    train = [
        example("Dengan siapa Kim berjabat tangan?", "Sergei Shoigu", caption, "q1"),
        example("Kapan Kim mengunjungi Vladivostok?", "16 September 2023", caption, "q2"),
        example("Apa kesepakatan Kim dan Putin?", "kerja sama militer dan ekonomi", body, "q3"),
        example("Siapa juara Liga Inggris?", None, body, "q4"),
    ]
    valid = [
        example("Siapa Presiden Rusia?", "Vladimir Putin", body, "v1"),
        example("Berapa kurs dolar hari ini?", None, caption, "v2"),
    ]
    return train, valid


def int8_rounded(model) -> None:
    """The model's layer matrices rounded as the export stores them."""
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            for part in ("q", "k", "v", "ao", "fi", "fo"):
                linear = getattr(layer, part)
                name = f"l{i}.{part}.w"
                packed = pack_weights({name: linear.weight.numpy()})
                rounded = widen(packed[name], packed[name + ".scale"])
                linear.weight.copy_(torch.from_numpy(rounded))


@pytest.mark.slow
def test_cpu_training_checkpoints_resumes_and_exports_what_numpy_reads(tmp_path: Path, caplog):
    train, valid = examples()
    pack_path = pack(train, valid, tmp_path / "pack.npz")
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--from-pack", str(pack_path), "--work", str(work), "--out", str(out)]
    args += ["--epochs", "2", "--device", "cpu", "--batch-tokens", "160"]
    args += ["--checkpoint-every", "1"]
    assert main(args) == 0
    provenance = json.loads((out / "reader.json").read_text("utf-8"))
    assert provenance["device"] == "cpu" and provenance["seed"] == 13
    assert [h["epoch"] for h in provenance["validation_history"]] == [1, 2]
    first = dict(np.load(out / "reader.npz"))
    checkpoint = work / "checkpoint-reader.pt"
    assert checkpoint.exists()

    # A second run finds the finished checkpoint and exports the same weights.
    caplog.set_level("INFO")
    assert main(args) == 0
    assert "resuming from" in caplog.text
    again = dict(np.load(out / "reader.npz"))
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)

    # The numpy reader computes what the trained PyTorch model computes with the exported
    # (int8-rounded) weights.
    reader = Reader(out / "reader.npz")
    with np.load(pack_path, allow_pickle=False) as archive:
        pack_data = {name: archive[name] for name in archive.files}
    model = torch_model(pack_data, torch.device("cpu"))
    model.load_state_dict(torch.load(checkpoint, weights_only=False)["model"])
    model.eval()
    int8_rounded(model)
    tokenizer = reader.tokenizer
    question = tokenizer.tokenize("Dengan siapa Kim berjabat tangan?").ids
    ids, _, _ = windows(
        question, tokenizer.tokenize(PARAGRAPHS[0]).ids, tokenizer.bos, tokenizer.eos
    )[0]
    numpy_logits = reader._logits([ids])[0]
    compact = np.searchsorted(pack_data["vocab"], ids)
    assert np.array_equal(pack_data["vocab"][compact], ids)
    with torch.no_grad():
        torch_logits = model(
            torch.tensor(compact[None], dtype=torch.long), torch.ones(1, len(ids), dtype=bool)
        )[0].numpy()
    assert np.abs(numpy_logits - torch_logits).max() < 1e-3
    reading = reader.read("Dengan siapa Kim berjabat tangan?", [PARAGRAPHS[0]])[0]
    assert 0 <= reading.start <= reading.end <= len(PARAGRAPHS[0])
