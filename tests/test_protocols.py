"""The released protocol reproduces the authors' eval.py; truncation counts against the encoder's tokenizer."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dar_lib.models as models
from dar_lib import protocols
from dar_lib.benchmarks import load_benchmark
from dar_lib.evaluate import EvalConfig, evaluate
from dar_lib.models import load_encoder, load_reformulator
from dar_lib.models.truncation import truncation_flags
from dar_lib.store import ArtefactStore

DIM = 16


def _vec(data: bytes) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    return torch.randn(DIM, generator=torch.Generator().manual_seed(seed))


class RandomEncoder:
    """Random but fixed embeddings: a text's from its characters, an image's from its pixels."""

    id = "random-encoder"
    dim = DIM

    def encode_text(self, texts):
        return F.normalize(torch.stack([_vec(str(t).encode()) for t in texts]), dim=-1)

    def encode_images(self, images):
        return F.normalize(torch.stack([_vec(im.convert("RGB").tobytes()) for im in images]), dim=-1)

    def fingerprint(self):
        return "random-encoder-v1"


class PromptImageGenerator:
    """One 8x8 image per prompt, whatever the seed (so the test can redraw it from the prompt alone)."""

    id = "prompt-image"

    @staticmethod
    def image(prompt: str) -> Image.Image:
        digest = hashlib.sha256(prompt.encode()).digest()
        return Image.frombytes("RGB", (8, 8), (digest * 6)[:192])

    def generate(self, prompts, seeds, steps=None, guidance=None, size=None):
        assert len(prompts) == len(seeds)
        return [self.image(p) for p in prompts]

    def fingerprint(self):
        return "prompt-image-v1"


def test_released_protocol_reproduces_eval_py_fused_scores(tmp_path, monkeypatch):
    real = models.load_model
    fakes = {"encoder": RandomEncoder(), "generator": PromptImageGenerator()}
    monkeypatch.setattr(models, "load_model",
                        lambda kind, spec, device=None, **kw: fakes.get(kind) or real(kind, spec, device, **kw))
    n = 4
    cfg = EvalConfig(benchmark="toy-visdial", encoder="random", generator="prompt-image", reformulator="toy:rules",
                     methods=("reformulated", "dar"), toy_size="smoke", n_dialogues=n, protocol="released",
                     **protocols.RELEASED_SETTINGS)
    table = evaluate(cfg, ArtefactStore(tmp_path), progress=False)
    assert set(table["protocol"]) == {"released"}

    # eval.py, re-derived: text = ", ".join(dialog[:r + 1]) of the rewrites; ONE generated image per round;
    # scores = w_img * gen @ corpus.T + w_text * text @ corpus.T with (0.2, 0.8) if dl < 2 else (0.5, 0.5);
    # rank = position of the target in a full descending argsort.
    bench = load_benchmark("toy-visdial", n, toy_size="smoke")
    enc, gen, ref = RandomEncoder(), PromptImageGenerator(), load_reformulator("toy:rules")
    corpus = enc.encode_images(bench.corpus_images(range(len(bench.corpus_paths))))
    for d_idx, d in enumerate(bench.dialogues):
        rewrites = [ref.rewrite(d.dialog[: r + 1], ref=(d.image, r)) for r in range(11)]
        for r in range(11):
            pred_vec = F.normalize(enc.encode_text([", ".join(rewrites[: r + 1])]), dim=-1)
            gen_feat = enc.encode_images([gen.image(ref.prompts(rewrites[r], 1)[0])])
            visual_weight, text_weight = (0.2, 0.8) if r < 2 else (0.5, 0.5)
            for method, scores in (("reformulated", pred_vec @ corpus.T),
                                   ("dar", visual_weight * gen_feat @ corpus.T + text_weight * pred_vec @ corpus.T)):
                arg_ranks = torch.argsort(scores, descending=True, dim=1)
                expected = (arg_ranks[0] == d.target_id).nonzero().item()
                got = table.query(f"method == '{method}' and dialog_idx == {d_idx} and round_idx == {r}")["rank"]
                assert got.item() == expected, (method, d_idx, r)


def test_released_protocol_fixes_its_settings():
    with pytest.raises(ValueError, match=r"k_images = 3: the released protocol fixes k_images = 1"):
        EvalConfig(benchmark="toy-visdial", encoder="toy:clip-zs", protocol="released", k_images=3,
                   schedule="released")
    with pytest.raises(ValueError, match=r"schedule = 'paper': the released protocol fixes schedule = 'released'"):
        EvalConfig(benchmark="toy-visdial", encoder="toy:clip-zs", protocol="released", k_images=1)
    with pytest.raises(ValueError, match=r"protocol = 'eval.py': must be one of 'default', 'released'"):
        EvalConfig(benchmark="toy-visdial", encoder="toy:clip-zs", protocol="eval.py")


def test_query_parts():
    qs = ["c", "r1", "r2"]
    assert protocols.query_parts("released", qs, 2) == qs and protocols.query_parts("default", qs, 2) == ["r2"]
    with pytest.raises(IndexError):
        protocols.query_parts("released", qs, 3)


# -- truncation: hand-made texts, counted against the tokenizer -------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return load_encoder("toy:clip-zs").tokenizer


def _n(tokenizer, text):
    return len(tokenizer(text)["input_ids"])  # with the two special tokens


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_flags_on_hand_made_texts(tokenizer, side):
    caption, turn = "a large red circle", "is the background blue? yes"
    n_caption, n_turn, n_sep = _n(tokenizer, caption) - 2, _n(tokenizer, turn) - 2, _n(tokenizer, ",") - 2
    assert (n_caption, n_turn, n_sep) == (4, 6, 1)  # the hand count these cases rest on
    full = 4 + 1 + 6  # caption, separator, turn ('?' is a token): 11 content tokens
    enc = load_encoder(f"toy:clip-zs?max_length={full + 2}&truncation={side}")
    parts = [[caption, turn]]
    cut, lost = truncation_flags(enc, parts)
    assert not cut[0] and not lost[0]  # exactly at the limit: nothing is cut
    enc.max_length = full + 1
    cut, lost = truncation_flags(enc, parts)
    assert cut[0] and not lost[0]  # one token cut: part of the newest turn (right) or of the caption (left)
    enc.max_length = 4 + 1 + 2  # the window holds the caption and the separator only
    cut, lost = truncation_flags(enc, parts)
    assert cut[0] and lost[0] == (side == "right")
    enc.max_length = 4 + 2  # the caption alone
    cut, lost = truncation_flags(enc, parts + [[caption]])
    assert list(cut) == [True, False] and list(lost) == [side == "right", False]


def test_left_truncation_keeps_the_newest_tokens(tokenizer):
    enc = load_encoder("toy:clip-zs?max_length=8&truncation=left")
    right = load_encoder("toy:clip-zs?max_length=8")
    text = "a large red circle, is the background blue? yes"
    kept = enc.tokenizer.convert_ids_to_tokens(enc._tokenize([text])["input_ids"][0].tolist())
    assert kept[0] == tokenizer.bos_token and kept[-1] == tokenizer.eos_token
    assert kept[1:-1] == tokenizer.tokenize(text)[-6:]
    assert enc.fingerprint() == right.fingerprint() + "|truncation=left"
    torch.testing.assert_close(enc.encode_text(["blue? yes"]), right.encode_text(["blue? yes"]))
    assert not torch.allclose(enc.encode_text([text]), right.encode_text([text]))
    with pytest.raises(ValueError, match=r"option truncation='middle': choose one of right, left"):
        load_encoder("toy:clip-zs?truncation=middle")


def test_eval_rows_record_protocol_and_truncation(tmp_path):
    cfg = EvalConfig(benchmark="toy-visdial", encoder="toy:clip-zs?max_length=24", methods=("baseline", "reformulated"),
                     toy_size="smoke", n_dialogues=3, protocol="released", schedule="released", k_images=1)
    table = evaluate(cfg, ArtefactStore(tmp_path), progress=False)
    enc = load_encoder("toy:clip-zs?max_length=24")
    bench = load_benchmark("toy-visdial", 3, toy_size="smoke")
    raw = table[table["method"] == "baseline"]
    expected = [_n(enc.tokenizer, d.query_text(r)) > 24 for d in bench.dialogues for r in range(11)]
    assert raw["text_cut"].tolist() == expected and any(expected)
    assert set(table["protocol"]) == {"released"} and set(table["text_limit"]) == {24}
    assert set(table["truncation"]) == {"right"}
    assert 0 < table["truncated_queries"].iat[0] <= table["text_cut"].sum()  # distinct cut texts
    summary = protocols.truncation_table(table)
    assert summary.query("method == 'baseline' and round_idx == 0")["pct_cut"].item() == 100 * np.mean(expected[::11])
