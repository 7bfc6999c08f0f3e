"""The paper profile rehearsed: every paper model replaced by a tiny random stand-in of the same class and layout.

A rehearsal runs the whole book under ``--profile paper`` on a CPU in minutes, through the very code
paths a real run takes: the same ids (``blip-original:``, ``blip:``, ``clip:``, ``beit3:``, ``sd3:``,
``sd:``, ``hf-llm:``), the same factory and importers, ChatIR's real dialogue files, and a corpus laid
out like COCO's ``unlabeled2017/`` folder. Only the weights and the images are fake:

- each hub id or checkpoint file of ``PROFILES["paper"]`` gets a stand-in folder or file under
  ``<root>/models/`` named like it (``models/Salesforce/blip-itm-base-coco``, ``models/model_base.pth``),
  built from configs with random weights: original-layout BLIP checkpoints (pre-training layout with
  the captioning decoder, momentum copies and queues for the zero-shot role; ITM layout for ChatIR's),
  a transformers ``BlipForImageTextRetrieval`` folder, a ``CLIPModel`` folder, a BEiT-3 checkpoint in
  unilm's layout with a sentencepiece model, an SD3-shaped ``StableDiffusion3Pipeline``, an
  SD-2.1-shaped ``StableDiffusionPipeline`` and a Qwen2-shaped chat LLM with a chat template. The
  BLIP and BEiT-3 towers are 64 wide with one head, so the importers' head-size-64 rule holds as for
  the real checkpoints;
- the corpus is a subset of ChatIR's 50k list (the targets of the first :data:`N_TARGETS` dialogues
  and :data:`N_DISTRACTORS` others) whose files are random-looking JPEGs of :data:`IMAGE_SIDE` pixels;
  ``load_benchmark`` restricts each ChatIR set to it through ``corpus_file``.

The LLM's replies are junk (it has random weights), so R1 and R2 take the recorded fallback of
``hf-llm:...?fallback=true`` (the raw dialogue as the query, template prompts). Its
``generation_config.json`` ends every reply after :data:`LLM_REPLY_TOKENS` junk tokens (a logit bias
on ``<|im_end|>``): unusable replies are never cached, so the rehearsal asks the LLM a few thousand
times, and 128 junk tokens each would add many minutes without exercising anything more.

Everything is built once into ``<cache>/rehearsal-<key>/`` (:func:`dar_lib.cachekeys.rehearsal_key`: this
module's code and :mod:`dar_lib.testing`'s, whose builders and shapes make the stand-ins, so any change to
either builds them afresh) and reused; :func:`prepare` returns
the parameters that point the paper profile at it. ``dar book --profile paper --rehearsal`` runs it.

Examples:
    ``prepare()`` builds the stand-ins (a minute or two); the ids it returns point the paper profile at them:

    >>> from pathlib import Path
    >>> parameters(Path("/stand-ins"))["encoders"]["zero-shot"]
    'blip-original:/stand-ins/models/model_base.pth+/stand-ins/models/Salesforce/blip-itm-base-coco'
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from dar_lib import models, settings, testing
from dar_lib.atomic import atomic_path
from dar_lib.benchmarks import CHATIR, chatir, images
from dar_lib.cachekeys import rehearsal_key
from dar_lib.errors import DataError
from dar_lib.models import blip_import as bi
from dar_lib.profiles import PROFILES

#: The first N dialogues' targets are in the rehearsal corpus (the four sets share targets and order).
N_TARGETS = 8
#: Other images of the 50k list in the rehearsal corpus.
N_DISTRACTORS = 120
#: Side of the corpus JPEGs in pixels.
IMAGE_SIDE = 48
#: Junk tokens in each stand-in LLM reply before it ends its turn.
LLM_REPLY_TOKENS = 2
#: Sizes the rehearsal runs at, on top of the profile's smoke sizes (``dar_lib.profiles.SMOKE``).
SIZES: dict[str, Any] = {"n_dialogues": 2, "steps": 2, "weak_steps": 2, "size": 32, "weak_size": 32}
#: Words of the stand-in tokenizers' vocabularies, taken from this many dialogues of the VisDial set.
VOCAB_DIALOGUES = 300


def default_root() -> Path:
    """``<DAR_CACHE_DIR>/rehearsal-<key>``, where the stand-ins are built and reused; the key
    (:func:`dar_lib.cachekeys.rehearsal_key`) names the code that builds them."""
    return settings.cache_dir() / f"rehearsal-{rehearsal_key()}"


# -- shared pieces ----------------------------------------------------------------------------------
class _Context:
    """What the builders share: the vocabulary words and the sentencepiece model, computed once."""

    def __init__(self, root: Path):
        self.root = root
        self._words: list[str] | None = None

    @property
    def words(self) -> list[str]:
        if self._words is None:

            counts: Counter[str] = Counter()
            for d in chatir.load("visdial")[:VOCAB_DIALOGUES]:
                for turn in d.dialog:
                    counts.update(re.findall(r"[a-z]+", turn.lower()))
            self._words = [w for w, _ in counts.most_common(400) if len(w) > 1]
        return self._words

    def sentences(self) -> list[str]:

        return [t for d in chatir.load("visdial")[:VOCAB_DIALOGUES] for t in d.dialog]

    @property
    def spm(self) -> Path:
        return self.root / "models" / "beit3.spm"


#: The stand-ins' shapes (:data:`dar_lib.testing.SHAPES`).
SHAPE = testing.SHAPES["tiny"]


def _blip_model(ctx: _Context, seed: int):
    tok = testing.bert_tokenizer(ctx.words)
    model = testing.blip_model(SHAPE["blip"], len(tok), bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
                               sep_token_id=tok.sep_token_id, seed=seed)
    return model, tok


# -- the stand-ins, one builder per paper-profile name ----------------------------------------------
def _build_spm(ctx: _Context, dest: Path) -> None:
    """unilm's ``beit3.spm``: a unigram sentencepiece model, here trained on ChatIR captions and turns."""
    import io

    import sentencepiece

    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(ctx.sentences()), model_writer=buf,
                                             vocab_size=256, model_type="unigram", num_threads=1,
                                             hard_vocab_limit=False, minloglevel=2)
    dest.write_bytes(buf.getvalue())


def _build_blip_coco(ctx: _Context, dest: Path) -> None:
    """``Salesforce/blip-itm-base-coco``: a transformers BLIP folder (weights, tokenizer, image processor).

    It is also the base config and tokenizer of the two original-layout checkpoints, as the hub
    folder is for the real ones.
    """
    from transformers import BlipImageProcessor

    model, tok = _blip_model(ctx, seed=1)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(dest)


def _build_blip_pretrain(ctx: _Context, dest: Path) -> None:
    """BLIP's pre-training ``model_base.pth``: ``{"model": state}`` in BLIP_Pretrain's layout.

    The contrastive parts and the ITM head, their momentum copies (``*_m.*``), the queues and their
    pointer, the temperature, and the captioning decoder ``text_decoder.*`` (a BERT LM head model with
    cross-attention) whose weights are tied to the text encoder's except its self-attention, as
    BLIP's ``tie_encoder_decoder_weights`` ties them.
    """
    from transformers import BlipTextConfig
    from transformers.models.blip.modeling_blip_text import BlipTextLMHeadModel


    model, _ = _blip_model(ctx, seed=2)
    sd = testing.blip_to_original(model)
    for prefix in ("visual_encoder.", "text_encoder.", "vision_proj.", "text_proj."):
        for k in [k for k in sd if k.startswith(prefix)]:
            sd[prefix[:-1] + "_m." + k[len(prefix):]] = sd[k].clone()
    testing.seeded(3)
    text_cfg = BlipTextConfig(**{**model.config.text_config.to_dict(), "is_decoder": True})
    decoder = BlipTextLMHeadModel(text_cfg).state_dict()
    for k, v in decoder.items():
        shared = "text_encoder." + k.removeprefix("bert.")
        own = k.startswith("bert.encoder.layer.") and ".attention." in k
        if k.startswith("bert.") and not own and shared in sd and sd[shared].shape == v.shape:
            v = sd[shared]  # tied to the encoder, as in BLIP
        sd["text_decoder." + k] = v
    sd["text_decoder.bert.embeddings.position_ids"] = sd[bi.POSITION_IDS].clone()  # a saved buffer, as in BLIP
    sd["text_decoder.cls.predictions.decoder.weight"] = sd["text_encoder.embeddings.word_embeddings.weight"]
    sd["text_decoder.cls.predictions.decoder.bias"] = sd["text_decoder.cls.predictions.bias"]
    dim = model.config.image_text_hidden_size
    sd.update(temp=torch.tensor(0.07), image_queue=torch.randn(dim, 16), text_queue=torch.randn(dim, 16),
              queue_ptr=torch.zeros(1, dtype=torch.long))
    torch.save({"model": sd}, dest)


def _build_blip_chatir(ctx: _Context, dest: Path) -> None:
    """ChatIR's ``chatir_weights.ckpt``: BLIP_ITM's layout (the retrieval parts, ``itm_head``, ``position_ids``)."""

    model, _ = _blip_model(ctx, seed=4)
    torch.save({"model": testing.blip_to_original(model)}, dest)


def _build_clip(ctx: _Context, dest: Path) -> None:
    """``openai/clip-vit-base-patch16``: a ``CLIPModel`` folder with its tokenizer and image processor."""
    from transformers import CLIPImageProcessor

    tok = testing.clip_tokenizer()
    testing.clip_model(SHAPE["clip"], tok, seed=5).save_pretrained(dest)
    tok.save_pretrained(dest)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(dest)


def _build_beit3(ctx: _Context, dest: Path) -> None:
    """unilm's ``beit3_base_patch16_384_coco_retrieval.pth``: ``{"model": state}`` of BEiT3ForRetrieval
    (:func:`dar_lib.testing.beit3_original_state`)."""
    testing.save_unilm(dest, testing.beit3_original_state(testing.beit3_config(ctx.spm, SHAPE["beit3"]), seed=6,
                                                          std=None))


def _build_sd3(ctx: _Context, dest: Path) -> None:
    """``stabilityai/stable-diffusion-3-medium-diffusers``: a ``StableDiffusion3Pipeline`` folder
    (:func:`dar_lib.testing.sd3_pipeline`), its T5 tokenizer over the stand-in sentencepiece model."""
    testing.sd3_pipeline(SHAPE["sd3"], testing.clip_tokenizer(), testing.t5_tokenizer(ctx.spm), seed=7
                         ).save_pretrained(dest)


def _build_sd21(ctx: _Context, dest: Path) -> None:
    """``stabilityai/stable-diffusion-2-1``: a ``StableDiffusionPipeline`` folder (:func:`dar_lib.testing.sd2_pipeline`:
    UNet, CLIP text encoder, 4-channel VAE, DDIM with v-prediction as SD 2.1's config; no safety checker)."""
    testing.sd2_pipeline(SHAPE["sd2"], testing.clip_tokenizer(), "sd21", seed=8).save_pretrained(dest)


def _build_llm(ctx: _Context, dest: Path) -> None:
    """``Qwen/Qwen2.5-1.5B-Instruct``: a ``Qwen2ForCausalLM`` folder with a byte-level BPE tokenizer and ChatML
    (:func:`dar_lib.testing.chat_tokenizer`, trained on the R1/R2 templates and ChatIR's dialogues).

    Random weights, so every reply is junk; the generation config ends each reply after
    :data:`LLM_REPLY_TOKENS` tokens (see the module docstring for why).
    """
    from transformers import GenerationConfig

    tok = testing.chat_tokenizer([*testing.PROMPT_TEXTS, *ctx.sentences()])
    model = testing.chat_lm(SHAPE["llm"], tok, seed=9)
    end, pad = tok.eos_token_id, tok.pad_token_id
    model.generation_config = GenerationConfig(eos_token_id=[end, pad], pad_token_id=pad,
                                               min_new_tokens=LLM_REPLY_TOKENS, sequence_bias=[[[end], 100.0]])
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


#: Paper-profile model names (hub ids and checkpoint files) -> the builder of their stand-in, in build
#: order (the sentencepiece model first: BEiT-3 and SD3's T5 tokenizer use it).
STANDINS: dict[str, Callable[[_Context, Path], None]] = {
    "beit3.spm": _build_spm,
    "Salesforce/blip-itm-base-coco": _build_blip_coco,
    "model_base.pth": _build_blip_pretrain,
    "chatir_weights.ckpt": _build_blip_chatir,
    "openai/clip-vit-base-patch16": _build_clip,
    "beit3_base_patch16_384_coco_retrieval.pth": _build_beit3,
    "stabilityai/stable-diffusion-3-medium-diffusers": _build_sd3,
    "stabilityai/stable-diffusion-2-1": _build_sd21,
    "Qwen/Qwen2.5-1.5B-Instruct": _build_llm,
}


# -- the corpus -------------------------------------------------------------------------------------
def corpus_paths(n_targets: int = N_TARGETS, n_distractors: int = N_DISTRACTORS, seed: int = 0) -> list[str]:
    """The rehearsal corpus: a subset of ChatIR's 50k list, in that list's order.

    Args:
        n_targets: the first N dialogues' targets (the same in all four sets; checked).
        n_distractors: other images of the 50k list, drawn with ``seed``.
        seed: seed of the draw.

    Raises:
        DataError: the four sets do not share their first targets.
    """
    import numpy as np


    full = chatir.load_corpus()
    targets = [d.image for d in chatir.load(CHATIR[0])[:n_targets]]
    for name in CHATIR[1:]:
        if [d.image for d in chatir.load(name)[:n_targets]] != targets:
            raise DataError(f"ChatIR set {name!r} does not share the first {n_targets} targets of {CHATIR[0]!r}")
    others = np.array(sorted(set(range(len(full))) - {full.index(t) for t in targets}))
    drawn = np.random.default_rng(seed).choice(others, size=n_distractors, replace=False)
    keep = set(targets) | {full[i] for i in drawn}
    return [p for p in full if p in keep]


def fake_image(path: str, side: int = IMAGE_SIDE):
    """A random-looking RGB image, a function of its corpus path alone (smooth colour field plus noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(zlib.crc32(path.encode("utf-8")))
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
    noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-24, 25, (side, side, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _build_data(dest: Path) -> None:
    """``<dest>/coco/unlabeled2017/*.jpg`` and ``<dest>/corpus.json`` (the subset, relative paths)."""
    paths = corpus_paths()
    for p in paths:
        target = images.resolve(dest / "coco", p)
        target.parent.mkdir(parents=True, exist_ok=True)
        fake_image(p).save(target, format="JPEG", quality=90)
    (dest / "corpus.json").write_text(json.dumps(paths, indent=0) + "\n", encoding="utf-8")


# -- building, reusing, and the parameters ----------------------------------------------------------
#: Stand-ins that are one file (a checkpoint, a sentencepiece model); every other stand-in is a hub folder,
#: whose name may hold dots ("Qwen/Qwen2.5-1.5B-Instruct" has the suffix ".5B-Instruct").
STANDIN_FILE_SUFFIXES = (".pth", ".ckpt", ".spm")


def _atomic_build(dest: Path, build: Callable[[Path], None], is_dir: bool) -> None:
    """Build into a temporary sibling and rename it into place (:func:`dar_lib.atomic.atomic_path`): a killed
    build leaves no half stand-in, and a folder another process finished first is kept."""
    with atomic_path(dest, directory=is_dir) as tmp:
        build(tmp)


def build(root: Path | None = None, *, log: Callable[[str], None] = print) -> Path:
    """Build every missing stand-in and the corpus under ``root`` (default :func:`default_root`).

    Returns:
        ``root``.

    Raises:
        DataError: ChatIR's files cannot be read (set ``DAR_DATA_MIRROR`` offline).
    """
    import diffusers
    import transformers

    root = Path(root or default_root()).expanduser().resolve()
    ctx = _Context(root)
    transformers.utils.logging.disable_progress_bar()  # no per-file "Writing model shards" bars
    diffusers.utils.logging.disable_progress_bar()
    for name, builder in STANDINS.items():
        dest = root / "models" / name
        if dest.exists():
            continue
        log(f"rehearsal: building the stand-in for {name}")
        _atomic_build(dest, lambda tmp, b=builder: b(ctx, tmp), is_dir=Path(name).suffix not in STANDIN_FILE_SUFFIXES)
    data = root / "data"
    if not data.exists():
        log(f"rehearsal: writing {N_TARGETS + N_DISTRACTORS} corpus images")
        _atomic_build(data, _build_data, is_dir=True)
    return root


def standin_id(spec: str, kind: str, root: Path) -> str:
    """The id of a paper-profile model's stand-in: same backend and options, each model part a local path.

    Args:
        spec: a paper-profile id, e.g.
            ``"blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=200"``.
        kind: ``"encoder"``, ``"generator"`` or ``"reformulator"``.
        root: the rehearsal folder.

    Raises:
        ValueError: a model part with no stand-in (the message lists those there are).
    """
    s = models.parse_spec(spec, models.list_backends()[kind], kind)
    parts = []
    for part in s.model.split("+"):
        if part not in STANDINS:
            raise ValueError(f"the rehearsal has no stand-in for {part!r} (in {kind} id {spec!r}); it has stand-ins "
                             f"for {', '.join(STANDINS)}. Add one to dar_lib.rehearsal.STANDINS")
        parts.append(str(root / "models" / part))
    options = dict(s.options)
    if s.backend == "hf-llm":
        options["fallback"] = "true"  # the stand-in's replies are junk: the recorded fallback runs
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{s.backend}:{'+'.join(parts)}" + (f"?{query}" if query else "")


def parameters(root: Path, paper: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters that point the paper profile at the stand-ins under ``root`` (no building).

    Args:
        root: the rehearsal folder (see :func:`build`).
        paper: the paper profile's table (default ``PROFILES["paper"]``).

    Returns:
        Overrides for :func:`dar_lib.profiles.parameters` ``("paper", smoke=True, **overrides)``.
    """
    paper = paper or PROFILES["paper"]
    root = Path(root)
    return {
        "rehearsal": True,
        "device": "cpu",
        "encoders": {role: standin_id(spec, "encoder", root) for role, spec in paper["encoders"].items()},
        "generator": standin_id(paper["generator"], "generator", root),
        "weak_generator": standin_id(paper["weak_generator"], "generator", root),
        "reformulator": standin_id(paper["reformulator"], "reformulator", root),
        # The released protocol's section: ChatIR's BLIP stand-in, and the authors' real rewrites (replayed
        # from the data mirror), so the rehearsal runs both protocols.
        "released_encoder": standin_id(paper["released_encoder"], "encoder", root),
        "released_reformulator": paper["released_reformulator"],
        "image_root": str(root / "data" / "coco"),
        "corpus_file": str(root / "data" / "corpus.json"),
        **SIZES,
    }


def prepare(root: Path | None = None, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or reuse) the stand-ins and return the paper profile's overrides for a rehearsal.

    ``dar book --profile paper --rehearsal`` passes them to
    ``dar_lib.book.build_book(out, profile="paper", smoke=True, parameters=prepare())``.
    """
    return parameters(build(root, log=log))
