"""Stand-in components and helpers for the test suite and ``measure/`` scripts, in one place (no test
module imports another's helpers; diffusers keeps its ``get_dummy_components`` the same way).

- tiny randomly initialised models built from configs, offline (BLIP, CLIP), a word-level tokenizer,
  noise images and texts, and BLIP's original checkpoint layout (the inverse of
  :mod:`dar_lib.models.blip_import`);
- a researcher's own dataset in ChatIR's format (:func:`own_dataset`);
- headless Chromium for the browser checks (the rendered book, the live session). Selenium and
  Chromium are optional: the ``test`` extra installs Selenium, Debian's ``chromium`` and
  ``chromium-driver`` the browser (``make browser-deps``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image


# -- tiny models and data ------------------------------------------------------------------------
#: The words :func:`make_tokenizer` knows (everything else is ``[UNK]``).
WORDS = ("a red blue green cat dog on the in of with sits table grass big small photo man woman "
         "is it yes no what color").split()


def make_tokenizer(max_len: int = 64, bos_eos: tuple[str, str] = ("[CLS]", "[SEP]")):
    """A word-level fast tokenizer built offline (no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", bos_eos[0], bos_eos[1]]
    vocab = {w: i for i, w in enumerate(specials + list(WORDS))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos_eos[0]} $A {bos_eos[1]}", special_tokens=[(bos_eos[0], 2), (bos_eos[1], 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token=bos_eos[0], eos_token=bos_eos[1], model_max_length=max_len)


#: The transformer size of every tiny text and vision tower (:func:`tiny_blip`, :func:`tiny_clip`).
_TINY_TOWER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def tiny_blip(image_size: int = 32):
    """A randomly initialised ``BlipForImageTextRetrieval`` (2 layers, width 32, seed 0), in eval mode."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    torch.manual_seed(0)
    cfg = BlipConfig(
        text_config=dict(**_TINY_TOWER, vocab_size=40, max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
                         pad_token_id=0),
        vision_config=dict(**_TINY_TOWER, image_size=image_size, patch_size=8, layer_norm_eps=1e-6,
                           initializer_range=0.02),
        image_text_hidden_size=16)
    return BlipForImageTextRetrieval(cfg).eval()


def tiny_clip():
    """A randomly initialised ``CLIPModel`` (2 layers, width 32, 32-px images, seed 0), in eval mode."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(**_TINY_TOWER, vocab_size=40, max_position_embeddings=77, bos_token_id=2, eos_token_id=3,
                         pad_token_id=0),
        vision_config=dict(**_TINY_TOWER, image_size=32, patch_size=8),
        projection_dim=24)
    return CLIPModel(cfg).eval()


def random_images(n: int = 5, seed: int = 0) -> list[Image.Image]:
    """``n`` RGB images of noise in five odd sizes (40x30 ... 64x20), for preprocessing and batching tests."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 30), (32, 32), (50, 64), (33, 47), (64, 20)]
    return [Image.fromarray(rng.integers(0, 255, (sizes[i % 5][1], sizes[i % 5][0], 3), dtype=np.uint8))
            for i in range(n)]


#: Texts within :data:`WORDS` (one question/answer turn among them).
TEXTS = ["a red cat on the table", "a dog", "what color is it? blue", "a big green photo of a man with a dog",
         "small woman in grass"]

#: Sentences the tiny BEiT-3 sentencepiece model is trained on (:func:`tiny_spm`).
SPM_SENTENCES = [
    "a red cat sits on the table", "a dog in the grass", "what color is it? blue", "two dogs and a cat",
    "a big green photo of a man with a dog", "small woman in grass", "is it a cat? yes", "the man is on the table",
]
#: Head size of the tiny BEiT-3 (32 wide, 2 heads; the released models' heads are 64 wide).
BEIT3_TINY_HEAD_SIZE = 16


def tiny_spm(path: Path) -> Path:
    """A tiny unigram sentencepiece model trained on :data:`SPM_SENTENCES`, written to ``path`` (stands in for
    unilm's ``beit3.spm``)."""
    import io

    import sentencepiece

    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(SPM_SENTENCES * 4), model_writer=buf,
                                             vocab_size=60, model_type="unigram", hard_vocab_limit=False,
                                             minloglevel=2)
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def tiny_beit3_config(spm_path: Path, **over):
    """A 2-layer, 32-wide :class:`~dar_lib.models.beit3.modeling.Beit3Config` for ``spm_path``'s pieces (a few
    spare embedding rows, like ``beit3.spm``'s 64,000 pieces in a 64,010-row table)."""
    import sentencepiece

    from dar_lib.models.beit3.modeling import Beit3Config

    n = len(sentencepiece.SentencePieceProcessor(model_file=str(spm_path)))
    kw = dict(embed_dim=32, layers=2, heads=2, ffn_dim=64, img_size=32, patch_size=16, vocab_size=n + 10,
              max_source_positions=80)
    return Beit3Config(**{**kw, **over})


def beit3_original_state(cfg, seed: int = 0) -> dict:
    """Random weights of a BEiT-3 retrieval model in unilm's layout (LayerNorms random too, so that mixing up
    the vision and language copies shows), with the ``logit_scale`` unilm saves."""
    from dar_lib.models.beit3.modeling import Beit3ForRetrieval

    torch.manual_seed(seed)
    model = Beit3ForRetrieval(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["logit_scale"] = torch.tensor(np.log(1 / 0.07), dtype=torch.float32)
    return sd


def save_unilm(path: Path, state_dict: dict, **extra) -> Path:
    """Write a BEiT-3 state dict as unilm's training saves it (``{"model": ..., **extra}``, a pickle)."""
    torch.save({"model": state_dict, **extra}, path)
    return Path(path)


def tiny_beit3_encoder(folder: Path, **kwargs):
    """A tiny BEiT-3 encoder loaded the paper's way (``load_encoder("beit3:<ckpt>+<spm>")``) from stand-in
    files written into ``folder``; ``kwargs`` go to ``load_encoder`` (e.g. ``max_length``)."""
    from dar_lib.models import load_encoder

    folder = Path(folder)
    spm = tiny_spm(folder / "tiny.spm")
    ckpt = save_unilm(folder / "beit3_tiny_patch16_32_retrieval.pth", beit3_original_state(tiny_beit3_config(spm)))
    return load_encoder(f"beit3:{ckpt}+{spm}", device="cpu", head_size=BEIT3_TINY_HEAD_SIZE, batch_size=2,
                        **kwargs)


def blip_to_original(model, retrieval_extras: bool = False) -> dict:
    """A transformers BLIP's weights in the original (salesforce/BLIP) layout: the inverse of
    :func:`dar_lib.models.blip_import.hf_to_original_key`, with the position ids the original keeps.

    Args:
        model: a ``BlipForImageTextRetrieval`` (e.g. :func:`tiny_blip`).
        retrieval_extras: add what a retrieval training checkpoint also holds (temperature, queues,
            momentum encoders' weights), which an import must skip.
    """
    from dar_lib.models import blip_import as bi

    sd = {bi.hf_to_original_key(k): v.clone() for k, v in model.state_dict().items()}
    n_pos = model.config.text_config.max_position_embeddings
    sd[bi.POSITION_IDS] = torch.arange(n_pos).unsqueeze(0)
    if retrieval_extras:
        sd.update(temp=torch.tensor(0.07), image_queue=torch.randn(16, 8), text_queue=torch.randn(16, 8),
                  idx_queue=torch.zeros(1, 8, dtype=torch.long), ptr_queue=torch.zeros(1, dtype=torch.long))
        sd["visual_encoder_m.cls_token"] = torch.zeros(1, 1, 32)
        sd["text_proj_m.weight"] = torch.zeros(16, 32)
    return sd


def save_blip_checkpoint(path: Path, state_dict: dict) -> Path:
    """Write ``state_dict`` as BLIP's training code saves it (``{"model": ..., "epoch": ...}``, a pickle)."""
    torch.save({"model": state_dict, "epoch": 3}, path)
    return path


def own_dataset(root: Path, n_rounds: int = 3, n_images: int = 12, n_dialogues: int = 3) -> dict[str, Path]:
    """A tiny dataset in ChatIR's format under ``root``: PNG images, a corpus list and a dialogue file.

    Returns:
        ``{"images": <image root>, "corpus": <corpus JSON>, "dialogues": <dialogue JSON>}``; dialogue ``d``
        targets image ``2 d`` and has ``n_rounds`` turns (caption first).
    """
    rng = np.random.default_rng(0)
    (root / "photos" / "set").mkdir(parents=True)
    paths = []
    for i in range(n_images):
        rel = f"set/img_{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "photos" / rel)
        paths.append(rel)
    colours = ["red", "blue", "green", "yellow"]
    records = [{"img": paths[2 * d], "dialog": [f"a {colours[d % 4]} square on a plain background"]
                + [f"is there a {colours[(d + r) % 4]} circle? {'yes' if r % 2 else 'no'}" for r in range(1, n_rounds)]}
               for d in range(n_dialogues)]
    corpus, dialogues = root / "corpus.json", root / "my_dialogues.json"
    corpus.write_text(json.dumps(paths))
    dialogues.write_text(json.dumps(records))
    return {"images": root / "photos", "corpus": corpus, "dialogues": dialogues}


def dar_eval(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``dar eval --quiet ARGS`` in this process: (exit status, stdout, stderr) as pytest's ``capsys``
    captured them."""
    from dar_lib import cli

    code = cli.main(["eval", "--quiet", *args])
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- headless Chromium -----------------------------------------------------------------------------
#: Headless, quiet, and the network off except the local server: every other host fails to resolve.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
#: How to get the browser where it is missing.
CHROMIUM_HINT = ("headless browser checks need Chromium and chromedriver "
                 "(Debian: apt-get install -y chromium chromium-driver)")


def chromium_paths() -> tuple[str, str] | None:
    """``(browser, chromedriver)`` found on ``PATH``, or ``None`` when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(profile_dir: Path, page_load_timeout_s: float = 60.0):
    """A Selenium-driven headless Chromium with :data:`CHROMIUM_FLAGS`, logging the console and the network.

    Args:
        profile_dir: an empty folder for the browser profile.
        page_load_timeout_s: how long a page may take to load.

    Raises:
        RuntimeError: Chromium or chromedriver is missing (the message says how to install them).
        ImportError: Selenium is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(CHROMIUM_HINT)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(paths[1]), options=options)
    drv.set_page_load_timeout(page_load_timeout_s)
    return drv


def requests_elsewhere(driver) -> list[str]:
    """URLs the pages opened so far asked of any host other than 127.0.0.1 (drains the performance log).

    Chromium's own background probes carry no document of ours and are left out.
    """
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] != "Network.requestWillBeSent":
            continue
        params = msg["params"]
        url, document = params["request"]["url"], params.get("documentURL", "")
        if not document.startswith("http://127.0.0.1"):
            continue
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1":
            continue
        out.append(url)
    return out
