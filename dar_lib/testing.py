"""Stand-in components, in one place, for the tests, the paper rehearsal (:mod:`dar_lib.rehearsal`) and the
``measure/`` scripts (diffusers keeps its ``get_dummy_components`` the same way; no test module imports
another's helpers).

- stand-in tokenizers of the real classes or word-level ones, built offline (no hub);
- one builder per model class (SD3, SD 2.x, BLIP, CLIP, BEiT-3, a Qwen2 chat LM) over one table of shapes,
  :data:`SHAPES`: ``"paper"`` (the paper profile's models, random weights, for timing) and ``"tiny"`` (the
  same classes in a few thousand parameters); the unit tests' smaller towers (:data:`UNIT_TOWER`);
- BLIP's and BEiT-3's original checkpoint layouts (the inverses of :mod:`dar_lib.models.blip_import` and
  :mod:`dar_lib.models.beit3.checkpoint`), noise images and texts;
- a researcher's own dataset in ChatIR's format (:func:`own_dataset`);
- headless Chromium for the browser checks (the rendered book, the live session). Selenium and
  Chromium are optional: the ``test`` extra installs Selenium, Debian's ``chromium`` and
  ``chromium-driver`` the browser (``make browser-deps``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image

from dar_lib.models import blip_import as bi
from dar_lib.models import load_encoder
from dar_lib.models import prompts as P
from dar_lib.models.beit3.modeling import Beit3Config, Beit3ForRetrieval

# -- stand-in tokenizers ---------------------------------------------------------------------------
#: The words :func:`make_tokenizer` knows (everything else is ``[UNK]``).
WORDS = ("a red blue green cat dog on the in of with sits table grass big small photo man woman "
         "is it yes no what color").split()


def word_tokenizer(max_len: int = 64, *, words=WORDS, specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]"),
                   vocab_size: int | None = None, wrap: bool = True, lowercase: bool = False,
                   cls_name: str = "PreTrainedTokenizerFast", **special_tokens):
    """A word-level fast tokenizer built offline (no hub): one id per word, split on whitespace and punctuation.

    Args:
        max_len: ``model_max_length``.
        words: the vocabulary after the specials; other words are ``specials[1]``.
        specials: pad, unknown, and (with ``wrap``) the begin and end tokens put around every text, BERT's
            ``[CLS] ... [SEP]`` by default.
        vocab_size: pad the vocabulary with ``w0``, ``w1``, ... to this many entries (a real tokenizer's size,
            so that every id a random model emits decodes).
        wrap: put ``specials[2]`` and ``specials[3]`` around every text.
        lowercase: lower-case texts first.
        cls_name: the transformers class (``PreTrainedTokenizerFast`` or a subclass).
        special_tokens: more special-token arguments (``eos_token=...``), over the defaults from ``specials``.

    Raises:
        ValueError: fewer than two specials (four with ``wrap``), or a ``vocab_size`` below the specials and words.
    """
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    if len(specials) < (4 if wrap else 2):
        raise ValueError(f"word_tokenizer: specials = {tuple(specials)!r}: give pad and unknown"
                         + (", then the begin and end tokens put around each text (wrap=True)" if wrap else ""))
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*specials, *words]))}
    if vocab_size is not None and vocab_size < len(vocab):
        raise ValueError(f"word_tokenizer: vocab_size = {vocab_size} is below the {len(vocab)} specials and words")
    i = 0
    while vocab_size is not None and len(vocab) < vocab_size:  # ids stay 0 .. len - 1 (a word w<i> may be given)
        vocab.setdefault(f"w{i}", len(vocab))
        i += 1
    tk = Tokenizer(models.WordLevel(vocab, unk_token=specials[1]))
    if lowercase:
        tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    names = dict(pad_token=specials[0], unk_token=specials[1])
    if wrap:
        bos, eos = specials[2], specials[3]
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])])
        names.update(bos_token=bos, eos_token=eos)
    return getattr(transformers, cls_name)(tokenizer_object=tk, model_max_length=max_len,
                                           **{**names, **special_tokens})


#: The R1/R2 system prompts, templates and retry messages (:mod:`dar_lib.models.prompts`): what a stand-in
#: chat tokenizer is trained on or knows by name.
PROMPT_TEXTS = (P.R1_SYSTEM, P.R1_TEMPLATE, P.R2_SYSTEM, P.R2_TEMPLATE, P.R1_RETRY, P.R2_RETRY)


def prompt_words(*texts: str) -> list[str]:
    """The words and punctuation of :data:`PROMPT_TEXTS` and ``texts``, lower-cased and sorted: a
    :func:`word_tokenizer` over them reads a chat prompt with no unknown word."""
    text = " ".join([*PROMPT_TEXTS, *texts]).lower()
    return sorted(set(re.findall(r"\w+|[^\w\s]", text)))


def make_tokenizer(max_len: int = 64, bos_eos: tuple[str, str] = ("[CLS]", "[SEP]")):
    """The unit tests' tokenizer: :func:`word_tokenizer` over :data:`WORDS`, ``bos_eos`` around every text."""
    return word_tokenizer(max_len, specials=("[PAD]", "[UNK]", *bos_eos))


def clip_tokenizer(max_len: int = 77):
    """CLIP's tokenizer class (byte-level BPE with ``</w>`` word ends) with no merges: one token per byte."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_len)


def bert_tokenizer(words: list[str]):
    """BLIP's tokenizer class (``BertTokenizer``, uncased WordPiece) over a small vocabulary, with
    BLIP's two extra tokens ``[DEC]`` and ``[ENC]`` at the end, as in its 30,524-entry vocabulary."""
    from transformers import BertTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *list("?,.!'\"-:;()/&"),
             *[f"##{c}" for c in chars], *[w for w in words if w not in chars], "[DEC]", "[ENC]"]
    vocab = list(dict.fromkeys(vocab))
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=512)


def t5_tokenizer(spm: Path):
    """T5's tokenizer class (unigram) with the pieces of a sentencepiece model (e.g. :func:`tiny_spm`'s)."""
    import sentencepiece
    from transformers import T5Tokenizer

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm))
    pieces = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(len(sp))
              if not (sp.is_control(i) or sp.is_unknown(i))]
    return T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces], extra_ids=0,
                       model_max_length=512)


def t5_word_tokenizer(max_len: int = 512, **kw):
    """A :func:`word_tokenizer` standing in for T5's: ``<pad>``, ``<unk>`` and ``</s>`` first, no begin token;
    ``kw`` as :func:`word_tokenizer`'s (``words``, ``vocab_size``, ``lowercase``)."""
    return word_tokenizer(max_len, specials=("<pad>", "<unk>", "</s>"), wrap=False, eos_token="</s>", **kw)


#: ChatML, the chat format of the Qwen2.5 instruct models.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
#: Qwen2's special tokens, in its order.
CHAT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def chat_tokenizer(texts: list[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer as Qwen2's (trained here on ``texts``, ``vocab_size`` entries instead of
    151,646), with Qwen2's specials and :data:`CHAT_TEMPLATE`: prompts take about as many tokens as with
    the real one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(CHAT_SPECIALS),
                                                       show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>"], model_max_length=4096)
    tok.chat_template = CHAT_TEMPLATE
    return tok


# -- stand-in models: one builder per class, one table of shapes -----------------------------------
def _tower(width: int, layers: int, heads: int, mlp: int) -> dict:
    return dict(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp)


def _blip_shape(cfg) -> dict:
    """A :data:`SHAPES` BLIP entry read from a ``BlipConfig``."""
    def tower(c):
        return _tower(c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size)

    return dict(text=tower(cfg.text_config), vision=tower(cfg.vision_config), image_size=cfg.vision_config.image_size,
                patch_size=cfg.vision_config.patch_size, proj=cfg.image_text_hidden_size,
                vocab_size=cfg.text_config.vocab_size)


#: Shapes of the stand-in models, by the paper profile's component:
#:
#: - ``"paper"``: the paper profile's models (SD3-medium: MMDiT 2B, CLIP-L and bigG text encoders, T5-XXL,
#:   16-channel VAE; SD 2.1 and SD-Turbo: UNet 865M, OpenCLIP-H text tower; BLIP-base; CLIP ViT-B/16;
#:   Qwen2.5-1.5B-Instruct), which ``measure/`` times with random weights;
#: - ``"tiny"``: the same classes and layouts a few thousand parameters large, for the tests, the paper
#:   rehearsal and ``measure/ --tiny``. The BLIP and CLIP towers are 64 wide with one head: the importers
#:   derive the head count from the real models' head size, 64.
#:
#: ``vocab_size`` is the real tokenizer's size (a stand-in tokenizer is padded to it where it matters); the
#: builders take the size of the tokenizer they are given.
SHAPES: dict[str, dict] = {
    "paper": {
        "sd3": dict(transformer=dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                                     attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                                     caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192),
                    clip_l=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                                projection_dim=768, hidden_act="quick_gelu"),
                    clip_g=dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                                projection_dim=1280, hidden_act="gelu"),
                    t5=dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                            feed_forward_proj="gated-gelu"),
                    vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32)),
        # SD 2.1 (768 px, v-prediction) and SD-Turbo (SD 2.1-base, 512 px): the same UNet and OpenCLIP-H tower.
        "sd2": dict(unet=dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
                              attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32),
                    text=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                              projection_dim=512, hidden_act="gelu"),
                    vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32)),
        "blip": _blip_shape(bi.base_config(224)),  # the loaders' BLIP-base, ViT-B/16 at 224 px
        "clip": dict(text=_tower(512, 12, 8, 2048), vision=_tower(768, 12, 12, 3072), image_size=224, patch_size=16,
                     proj=512, vocab_size=49408),
        "beit3": dict(embed_dim=768, layers=12, heads=12, ffn_dim=3072, img_size=384, patch_size=16,
                      max_source_positions=1024),
        "llm": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                    num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
                    rms_norm_eps=1e-6, tie_word_embeddings=True),
    },
    "tiny": {
        "sd3": dict(transformer=dict(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=1,
                                     attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                     caption_projection_dim=16, pooled_projection_dim=32, pos_embed_max_size=16),
                    clip_l=dict(hidden_size=16, intermediate_size=32, num_attention_heads=1, num_hidden_layers=1,
                                projection_dim=16, hidden_act="quick_gelu"),
                    clip_g=dict(hidden_size=16, intermediate_size=32, num_attention_heads=1, num_hidden_layers=1,
                                projection_dim=16, hidden_act="gelu"),
                    t5=dict(vocab_size=512, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                            feed_forward_proj="gated-gelu"),
                    vae=dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4)),
        "sd2": dict(unet=dict(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=16,
                              attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=4),
                    text=dict(hidden_size=16, intermediate_size=32, num_attention_heads=1, num_hidden_layers=1,
                              projection_dim=16, hidden_act="gelu"),
                    vae=dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4)),
        "blip": dict(text=_tower(64, 1, 1, 64), vision=_tower(64, 1, 1, 64), image_size=32, patch_size=16, proj=16,
                     vocab_size=512),
        "clip": dict(text=_tower(64, 1, 1, 64), vision=_tower(64, 1, 1, 64), image_size=32, patch_size=16, proj=16,
                     vocab_size=512),
        "beit3": dict(embed_dim=64, layers=1, heads=1, ffn_dim=64, img_size=32, patch_size=16,
                      max_source_positions=1024),
        "llm": dict(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6,
                    tie_word_embeddings=True),
    },
}
#: The unit tests' BLIP and CLIP towers (2 layers, so that a test can name layer 1; 32 wide, 4 heads of 8).
UNIT_TOWER = _tower(32, 2, 4, 37)


def seeded(seed: int) -> None:
    """Seed torch's global generator (a builder's random initialisation follows from it)."""
    torch.manual_seed(seed)


def vae(shape: dict, latent_channels: int, sample_size: int = 32, **kw):
    """An ``AutoencoderKL`` with ``len(shape["block_out_channels"])`` blocks (downsampling 2^(n-1) x)."""
    from diffusers import AutoencoderKL

    n = len(shape["block_out_channels"])
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, latent_channels=latent_channels,
                         sample_size=sample_size, **shape, **kw)


def clip_text(shape: dict, tok, cls_name: str = "CLIPTextModel"):
    """A CLIP text tower (``CLIPTextModel`` or ``CLIPTextModelWithProjection``) of ``shape`` for ``tok``."""
    import transformers
    from transformers import CLIPTextConfig

    cfg = CLIPTextConfig(vocab_size=len(tok), max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **shape)
    return getattr(transformers, cls_name)(cfg)


def sd3_pipeline(shape: dict, clip_tok, t5_tok, seed: int = 0):
    """A ``StableDiffusion3Pipeline`` of ``shape`` (:data:`SHAPES` ``[...]["sd3"]``): an MMDiT, two CLIP text
    encoders with projection, a T5 encoder, a 16-channel VAE and the flow-matching Euler scheduler (shift 3,
    as SD3-medium's config; its tables on the CPU, as loaded, when built under ``torch.device``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import T5Config, T5EncoderModel

    seeded(seed)
    t5 = {**shape["t5"], "vocab_size": len(t5_tok)}
    with torch.device("cpu"):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**shape["transformer"]), scheduler=scheduler,
        vae=vae(shape["vae"], 16, shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False,
                use_post_quant_conv=False),
        text_encoder=clip_text(shape["clip_l"], clip_tok, "CLIPTextModelWithProjection"), tokenizer=clip_tok,
        text_encoder_2=clip_text(shape["clip_g"], clip_tok, "CLIPTextModelWithProjection"), tokenizer_2=clip_tok,
        text_encoder_3=T5EncoderModel(T5Config(pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id,
                                               decoder_start_token_id=0, **t5)),
        tokenizer_3=t5_tok)


def sd2_scheduler(kind: str = "sd21"):
    """The scheduler of an SD 2.x stand-in: ``"sd21"`` as SD 2.1's hub config (DDIM, v-prediction),
    ``"sd21-dpm"`` as its model card's example (DPM-Solver++ multistep, v-prediction), ``"turbo"`` as
    SD-Turbo's config (Euler, epsilon, trailing timesteps)."""
    betas = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 steps_offset=1)
    with torch.device("cpu"):  # its tables stay on the CPU, as loaded, when models are built on a device
        return _sd2_scheduler(kind, betas)


def _sd2_scheduler(kind: str, betas: dict):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if kind == "sd21":
        return DDIMScheduler(**betas, clip_sample=False, set_alpha_to_one=False, prediction_type="v_prediction")
    if kind == "sd21-dpm":
        return DPMSolverMultistepScheduler(**betas, prediction_type="v_prediction")
    if kind == "turbo":
        return EulerDiscreteScheduler(**betas, prediction_type="epsilon", timestep_spacing="trailing")
    raise ValueError(f"sd2_scheduler: no scheduler {kind!r}; choose sd21, sd21-dpm or turbo")


def sd2_pipeline(shape: dict, tok, scheduler: str = "sd21", seed: int = 0):
    """A ``StableDiffusionPipeline`` of ``shape`` (:data:`SHAPES` ``[...]["sd2"]``): SD 2.x's UNet (cross-attention
    in all but the last down block), a CLIP text tower, a 4-channel VAE, :func:`sd2_scheduler` ``(scheduler)``;
    no safety checker."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    sched = sd2_scheduler(scheduler)  # a bad name fails before any weight is built
    seeded(seed)
    n = len(shape["unet"]["block_out_channels"])
    unet = UNet2DConditionModel(in_channels=4, out_channels=4,
                                down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1), **shape["unet"])
    return StableDiffusionPipeline(unet=unet, scheduler=sched, vae=vae(shape["vae"], 4,
                                                                                         scaling_factor=0.18215),
                                   text_encoder=clip_text(shape["text"], tok), tokenizer=tok, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def blip_model(shape: dict, vocab_size: int, bos_token_id: int = 2, sep_token_id: int = 3, max_positions: int = 512,
               seed: int = 0, **over):
    """A ``BlipForImageTextRetrieval`` of ``shape`` (:data:`SHAPES` ``[...]["blip"]``), in eval mode.

    ``bos_token_id`` is the text encoder's first token (BLIP's ``[ENC]``/``[DEC]`` slot); ``max_positions`` the
    text tower's positions (BLIP's 512; the encoder's default ``max_length`` follows from it); ``over`` replaces
    shape entries (``image_size=64``).

    Raises:
        ValueError: an ``over`` entry the shape does not have.
    """
    from transformers import BlipConfig, BlipForImageTextRetrieval

    if set(over) - set(shape):
        raise ValueError(f"blip_model: no shape entry {sorted(set(over) - set(shape))}; it has {sorted(shape)}")
    shape = {**shape, **over}
    seeded(seed)
    cfg = BlipConfig(
        text_config=dict(**shape["text"], vocab_size=vocab_size, max_position_embeddings=max_positions,
                         layer_norm_eps=1e-12, pad_token_id=0, bos_token_id=bos_token_id, sep_token_id=sep_token_id),
        # BlipVisionConfig's default initializer_range (1e-10) gives near-constant image features (zero in fp16).
        vision_config=dict(**shape["vision"], image_size=shape["image_size"], patch_size=shape["patch_size"],
                           layer_norm_eps=1e-6, initializer_range=0.02),
        image_text_hidden_size=shape["proj"])
    return BlipForImageTextRetrieval(cfg).eval()


def clip_model(shape: dict, tok, seed: int = 0):
    """A ``CLIPModel`` of ``shape`` (:data:`SHAPES` ``[...]["clip"]``) for ``tok``, in eval mode."""
    from transformers import CLIPConfig, CLIPModel

    seeded(seed)
    cfg = CLIPConfig(
        text_config=dict(**shape["text"], vocab_size=len(tok), max_position_embeddings=77,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(**shape["vision"], image_size=shape["image_size"], patch_size=shape["patch_size"]),
        projection_dim=shape["proj"])
    return CLIPModel(cfg).eval()


#: The unit tests' chat LM: Llama's architecture, 2 layers, 32 wide, untied (its greedy replies vary more
#: than a tied one-layer model's, which mostly repeats one input token).
UNIT_LLM = dict(arch="Llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=1024)


def chat_lm(shape: dict, tok, seed: int = 0):
    """A causal LM of ``shape`` (:data:`SHAPES` ``[...]["llm"]``: Qwen2, or ``shape["arch"]``, e.g.
    :data:`UNIT_LLM`) for ``tok``, in eval mode."""
    import transformers

    shape = {**shape, "vocab_size": len(tok)}
    arch = shape.pop("arch", "Qwen2")
    seeded(seed)
    cfg = getattr(transformers, f"{arch}Config")(**shape, eos_token_id=tok.eos_token_id,
                                                 pad_token_id=tok.pad_token_id, bos_token_id=None)
    return getattr(transformers, f"{arch}ForCausalLM")(cfg).eval()


def tiny_sd3():
    """A tiny SD3 (:data:`SHAPES` ``["tiny"]["sd3"]``, seed 0) with CLIP's tokenizer class and a word-level T5
    stand-in tokenizer."""
    return sd3_pipeline(SHAPES["tiny"]["sd3"], clip_tokenizer(), t5_word_tokenizer(77))


def tiny_sd21():
    """A tiny SD 2.1 (:data:`SHAPES` ``["tiny"]["sd2"]``, DDIM with v-prediction, seed 0) with CLIP's tokenizer
    class."""
    return sd2_pipeline(SHAPES["tiny"]["sd2"], clip_tokenizer())


def tiny_blip(image_size: int = 32):
    """The unit tests' BLIP: :func:`blip_model` with :data:`UNIT_TOWER` towers, 8-px patches, for
    :func:`make_tokenizer`'s vocabulary (seed 0), in eval mode."""
    return blip_model(dict(text=UNIT_TOWER, vision=UNIT_TOWER, image_size=image_size, patch_size=8, proj=16),
                      vocab_size=40, max_positions=64)


def tiny_clip():
    """The unit tests' CLIP: :func:`clip_model` with :data:`UNIT_TOWER` towers, 32-px images in 8-px patches,
    for :func:`make_tokenizer` (seed 0), in eval mode."""
    return clip_model(dict(text=UNIT_TOWER, vision=UNIT_TOWER, image_size=32, patch_size=8, proj=24),
                      make_tokenizer())


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


def beit3_config(spm_path: Path, shape: dict):
    """A :class:`~dar_lib.models.beit3.modeling.Beit3Config` of ``shape`` for ``spm_path``'s pieces (a few spare
    embedding rows, like ``beit3.spm``'s 64,000 pieces in a 64,010-row table)."""
    import sentencepiece

    n = len(sentencepiece.SentencePieceProcessor(model_file=str(spm_path)))
    return Beit3Config(vocab_size=n + 10, **shape)


#: The unit tests' BEiT-3 (2 layers, 32 wide, heads of :data:`BEIT3_TINY_HEAD_SIZE`).
BEIT3_UNIT = dict(embed_dim=32, layers=2, heads=2, ffn_dim=64, img_size=32, patch_size=16, max_source_positions=80)


def tiny_beit3_config(spm_path: Path, **over):
    """:func:`beit3_config` of :data:`BEIT3_UNIT`, ``over`` replacing its entries."""
    return beit3_config(spm_path, {**BEIT3_UNIT, **over})


def beit3_original_state(cfg, seed: int = 0, std: float | None = 0.3) -> dict:
    """Random weights of a BEiT-3 retrieval model in unilm's layout, with the ``logit_scale`` unilm saves.

    ``std``: every parameter, LayerNorms too, drawn from N(0, std), so that mixing up the vision and language
    copies shows (the importer's tests); ``None`` keeps the model's own initialisation, whose text embeddings
    stay apart (the paper rehearsal).
    """
    torch.manual_seed(seed)
    model = Beit3ForRetrieval(cfg)
    if std is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, std)
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
