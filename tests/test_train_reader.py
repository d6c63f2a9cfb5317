"""Training the reader on the CPU: a few examples through pack, train, checkpoint and export,
and the exported weights read by the numpy reader as PyTorch computes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.models.reader import Reader, pack_weights, widen, windows
from retrieval.tools.train_reader import (
    Example,
    TrainingError,
    main,
    mined_so_far,
    pack,
    resume_problems,
    torch_model,
    trained_weights,
    upsample,
)

from .conftest import SEED_ARTICLE

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="training needs PyTorch")

SEED_TEXT = SEED_ARTICLE.read_text("utf-8").replace("\r\n", "\n")
PARAGRAPHS = [p for p in SEED_TEXT.split("\n\n") if len(p) > 80]


def example(question: str, answer: str | None, passage: str) -> Example:
    start = passage.index(answer) if answer else None
    end = start + len(answer) if answer else None
    return Example(question, passage, start, end, "seed")


def examples() -> tuple[list[Example], list[Example]]:
    caption, body = PARAGRAPHS[0], PARAGRAPHS[2]
    train = [
        example("Dengan siapa Kim berjabat tangan?", "Sergei Shoigu", caption),
        example("Kapan Kim mengunjungi Vladivostok?", "16 September 2023", caption),
        example("Apa kesepakatan Kim dan Putin?", "kerja sama militer dan ekonomi", body),
        example("Siapa juara Liga Inggris?", None, body),
    ]
    valid = [
        example("Siapa Presiden Rusia?", "Vladimir Putin", body),
        example("Berapa kurs dolar hari ini?", None, caption),
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


@pytest.fixture(scope="module")
def pack_path(tmp_path_factory) -> Path:
    train, valid = examples()
    return pack(
        train, valid, tmp_path_factory.mktemp("pack") / "pack.npz", {"data": ["seed paragraphs"]}
    )


@pytest.mark.slow
@needs_torch
def test_cpu_training_checkpoints_resumes_and_exports_what_numpy_reads(
    tmp_path: Path, pack_path: Path, caplog, capsys
):
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--from-pack", str(pack_path), "--work", str(work), "--out", str(out)]
    args += ["--epochs", "2", "--device", "cpu", "--batch-tokens", "160"]
    args += ["--checkpoint-every", "1"]
    assert main(args) == 0
    provenance = json.loads((out / "reader.json").read_text("utf-8"))
    assert provenance["device"] == "cpu" and provenance["seed"] == 13
    assert provenance["sittings"] == [{"from_step": 0, "device": "cpu", "precision": "float32"}]
    # What went into the pack, as the pack recorded it.
    assert provenance["data"] == ["seed paragraphs"]
    assert provenance["pack"]["rows"]["valid"] >= 2 and provenance["pack"]["rows"]["train"] >= 4
    assert [h["epoch"] for h in provenance["validation_history"]] == [1, 2]
    first = dict(np.load(out / "reader.npz"))
    checkpoint = work / "checkpoint-reader.pt"
    assert checkpoint.exists()

    state = torch.load(checkpoint, weights_only=False)
    assert state["history"] == provenance["validation_history"] and state["seconds"] > 0

    # A second run finds the finished checkpoint and exports the same weights, with the
    # validation history and training time of the first.
    caplog.set_level("INFO")
    assert main(args) == 0
    assert "resuming from" in caplog.text
    again = dict(np.load(out / "reader.npz"))
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    resumed = json.loads((out / "reader.json").read_text("utf-8"))
    assert [h["epoch"] for h in resumed["validation_history"]] == [1, 2]
    assert resumed["validation_history"] == provenance["validation_history"]
    assert resumed["train_seconds"] >= round(state["seconds"], 1) > 0
    assert resumed["sittings"] == provenance["sittings"]

    # A run with other settings, or another pack, does not go on from that checkpoint.
    capsys.readouterr()
    assert main([*args, "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert "--epochs 2 there, 3 here" in err and "--restart" in err and "--tag" in err
    other_pack = tmp_path / "other.npz"
    with np.load(pack_path, allow_pickle=False) as archive:
        np.savez(other_pack, **{name: archive[name] for name in archive.files})
    other = [*args]
    other[other.index(str(pack_path))] = str(other_pack)
    assert main(other) == 1
    assert "pack sha256" in capsys.readouterr().err
    assert torch.load(checkpoint, weights_only=False)["step"] == state["step"]

    # The numpy reader computes what the trained PyTorch model computes with the exported
    # (int8-rounded) weights.
    reader = Reader(out / "reader.npz", runtime="numpy")
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


def stopped_at_once(tmp_path: Path, pack_path: Path, epochs: int) -> tuple[list[str], Path, Path]:
    """A CPU run stopped by its time limit before its first batch: its arguments (to go on
    with), its output folder and its work folder."""
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--from-pack", str(pack_path), "--work", str(work), "--out", str(out)]
    args += ["--epochs", str(epochs), "--device", "cpu", "--batch-tokens", "160"]
    assert main([*args, "--time-limit", "1e-9"]) == 0
    return args, out, work


@pytest.mark.slow
@needs_torch
def test_a_run_stopped_by_its_time_limit_goes_on_from_where_it_stopped(
    tmp_path: Path, pack_path: Path
):
    args, out, work = stopped_at_once(tmp_path, pack_path, epochs=2)
    stopped = json.loads((out / "reader.json").read_text("utf-8"))["validation_history"]
    assert [(h["epoch"], h["stopped_at_step"]) for h in stopped] == [(1, 0)]
    state = torch.load(work / "checkpoint-reader.pt", weights_only=False)
    assert state["step"] == 0 and state["history"] == []
    # The second sitting computes in bfloat16: the run records each sitting's precision.
    assert main([*args, "--bf16"]) == 0
    provenance = json.loads((out / "reader.json").read_text("utf-8"))
    history = provenance["validation_history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all("stopped_at_step" not in h for h in history)
    assert [(s["from_step"], s["precision"]) for s in provenance["sittings"]] == [
        (0, "float32"),
        (0, "bfloat16 autocast"),
    ]


@pytest.mark.slow
@needs_torch
def test_a_checkpoint_without_sittings_says_the_first_was_not_recorded(
    tmp_path: Path, pack_path: Path
):
    args, out, work = stopped_at_once(tmp_path, pack_path, epochs=1)
    checkpoint = work / "checkpoint-reader.pt"
    state = torch.load(checkpoint, weights_only=False)
    del state["sittings"]  # as an older version wrote it
    torch.save(state, checkpoint)
    assert main(args) == 0
    sittings = json.loads((out / "reader.json").read_text("utf-8"))["sittings"]
    assert [s["precision"] for s in sittings] == ["not recorded", "float32"]


@needs_torch
def test_a_misspelled_upsample_source_is_refused(tmp_path: Path, pack_path: Path, capsys):
    args = ["--from-pack", str(pack_path), "--work", str(tmp_path), "--out", str(tmp_path)]
    assert main([*args, "--device", "cpu", "--upsample", "sed=2"]) == 1
    err = capsys.readouterr().err
    assert "'sed'" in err and "its sources are seed" in err
    assert main([*args, "--device", "cpu", "--upsample", "seed=two"]) == 1
    assert "SOURCE=N" in capsys.readouterr().err
    assert not list(tmp_path.glob("checkpoint-*"))


def test_upsample_repeats_and_drops_rows_by_source():
    sources = np.array(["a", "b", "a", "c"])
    rows = np.arange(4)
    assert sorted(upsample(rows, sources, ["a=2", "b=0"]).tolist()) == [0, 0, 2, 2, 3]
    with pytest.raises(TrainingError, match="no training rows from 'd'; its sources are a, b, c"):
        upsample(rows, sources, ["d=2"])


def test_a_fractional_upsample_takes_that_share_of_a_source_drawn_by_the_seed():
    sources = np.array(["a"] * 10 + ["b"] * 4)
    rows = np.arange(14)
    half = upsample(rows, sources, ["a=0.5"], seed=1)
    taken = [r for r in half.tolist() if r < 10]
    assert len(taken) == 5 and len(set(taken)) == 5
    assert sorted(r for r in half.tolist() if r >= 10) == [10, 11, 12, 13]
    assert np.array_equal(upsample(rows, sources, ["a=0.5"], seed=1), half)
    more = upsample(rows, sources, ["a=1.5"], seed=1).tolist()
    assert len([r for r in more if r < 10]) == 15 and set(range(10)) <= set(more)
    for bad in ("a=-1", "a=half", "a=1e9"):
        with pytest.raises(TrainingError, match="SOURCE=N"):
            upsample(rows, sources, [bad])


@pytest.mark.slow
@needs_torch
def test_training_can_go_on_from_a_trained_reader(tmp_path: Path, pack_path: Path, capsys):
    first, again, work = tmp_path / "first", tmp_path / "again", tmp_path / "work"
    args = ["--from-pack", str(pack_path), "--work", str(work), "--device", "cpu"]
    args += ["--batch-tokens", "160", "--epochs", "1"]
    assert main([*args, "--out", str(first), "--tag", "first"]) == 0
    # With a learning rate of 0 the run starts from, and so exports, the first run's weights,
    # the span head's too (a fresh head would be random).
    init = ["--init-from", str(first / "reader.npz"), "--lr", "0", "--tag", "again"]
    assert main([*args, "--out", str(again), *init]) == 0
    start, end = trained_weights(first / "reader.npz"), trained_weights(again / "reader.npz")
    assert start.keys() == end.keys() and "span.w" in start
    assert all(np.allclose(start[k], end[k], atol=1e-6) for k in start)
    provenance = json.loads((again / "reader.json").read_text("utf-8"))
    recorded = json.loads((first / "reader.json").read_text("utf-8"))["sha256"]
    assert provenance["init_from"] == recorded

    # A changed file is refused before training, naming it.
    capsys.readouterr()
    (first / "reader.npz").write_bytes(b"not weights")
    assert main([*args, "--out", str(again), *init[:2], "--tag", "third"]) == 1
    err = capsys.readouterr().err
    assert "--init-from" in err and "checksum" in err and not list(work.glob("checkpoint-third*"))


def test_resume_problems_name_what_changed():
    settings = {"seed": 13, "epochs": 2, "lr": 1e-4, "upsample": ["a=2"], "limit": 0}
    state = {"pack_sha256": "ab" * 32, "settings": dict(settings)}
    assert resume_problems(state, "ab" * 32, settings) == []
    changed = {**settings, "lr": 2e-4, "upsample": ["a=3", "b=0"]}
    assert resume_problems(state, "cd" * 32, changed) == [
        f"pack sha256 {'ab' * 6}… there, {'cd' * 6}… here",
        "--lr 0.0001 there, 0.0002 here",
        "--upsample a=2 there, a=3 b=0 here",
    ]
    old = resume_problems({"step": 5}, "ab" * 32, settings)
    assert len(old) == 1 and "older version" in old[0]


def test_mining_goes_on_past_a_line_cut_off_by_a_stop(tmp_path: Path):
    partial = tmp_path / "mined.partial"
    assert mined_so_far(partial) == set()
    records = [{"id": "a", "passages": ["Jakarta"]}, {"id": "b", "passages": []}]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    cut = json.dumps({"id": "c", "passages": ["Rp 5.000 — harga é"]}, ensure_ascii=False)
    partial.write_bytes((lines + cut).encode("utf-8")[:-4])  # ends inside a character
    assert mined_so_far(partial) == {"a", "b"}
    assert partial.read_text("utf-8") == lines  # the next record starts on a line of its own
    assert mined_so_far(partial) == {"a", "b"}
