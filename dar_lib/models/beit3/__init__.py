"""BEiT-3 retrieval encoder: unilm's ``BEiT3ForRetrieval`` ported from torchscale, loading the original checkpoints.

Why a port and not ``torchscale``: the reference model (``torchscale.model.BEiT3`` plus unilm's
``beit3/modeling_finetune.py``) cannot be installed cleanly beside this project's pinned CPU torch.
torchscale imports its pinned dependencies at module level (``torchscale/component/droppath.py``:
``from timm.models.layers import drop_path``; ``torchscale/architecture/encoder.py``:
``from fairscale.nn import checkpoint_wrapper, wrap``), so ``pip install --no-deps torchscale``
fails at import unless fake ``timm``/``fairscale`` modules are planted in ``sys.modules`` for the
whole process; installed with its dependencies, ``timm==0.6.13`` pulls torchvision (which fails
to import beside our torch: ``operator torchvision::nms does not exist``) and pip even replaces
the pinned torch. The retrieval features need about two hundred lines of it, so they are ported
here, with the same module names as torchscale 0.2.0 (the version unilm's BEiT-3 pins) so that
unilm's checkpoints load by name, tensor for tensor. Not ported, because retrieval inference with
the released configs never uses them: the joint vision-language pass, MoE, xPos, relative position
bias, drop-path, DeepNorm, flash attention and incremental decoding.

The model (torchscale ``EncoderConfig`` as unilm's ``_get_base_config`` sets it): pre-LayerNorm
multiway transformer in which EVERY per-token module has a vision copy ``A`` and a language copy
``B`` (the q/k/v/out projections and the sub-LayerNorm of the attention as well as the FFN and
the LayerNorms; only the attention pattern itself is shared), sub-LayerNorms inside attention
(``inner_attn_ln``) and FFN (``ffn_layernorm``), exact GELU, LayerNorm eps 1e-5, learned absolute
positions starting at index 2 (fairseq), a final multiway LayerNorm. Retrieval features as unilm
computes them: image ``normalize(vision_head(x[:, 0]))`` of the vision-only pass, text
``normalize(language_head(x[:, 0]))`` of the text-only pass with a padding mask.

Preprocessing (unilm ``datasets.build_transform`` for evaluation): square bicubic resize to the
checkpoint's image size (384 for ``beit3_base_patch16_384_coco_retrieval.pth``), mean and std 0.5.
Text: unilm tokenises with ``XLMRobertaTokenizer(beit3.spm)``, ``<s>`` + at most ``max_len - 2``
pieces + ``</s>``, pad id 1, ``max_len`` 64 in the retrieval fine-tuning. transformers 5 no longer
builds that tokenizer from a ``.spm`` file (``XLMRobertaTokenizer("beit3.spm")`` raises a
TypeError; ``vocab_file=`` is ignored and every token becomes ``<unk>``), so
:class:`Beit3Tokenizer` reproduces its fairseq id mapping over ``sentencepiece`` directly.

Examples:
    With unilm's checkpoint and sentencepiece model on disk (``load_encoder("beit3:<ckpt>+<spm>")`` is the
    same), ``Beit3Encoder.from_checkpoint("beit3_base_patch16_384_coco_retrieval.pth", "beit3.spm")
    .encode_text(["a dog on a sofa"])`` has shape ``(1, 768)``; ``tests/test_beit3.py`` builds tiny ones.
"""

from __future__ import annotations

from pathlib import Path

from dar_lib.cachekeys import file_tag
from dar_lib.models.beit3.checkpoint import load_beit3
from dar_lib.models.beit3.modeling import (
    BEIT3_HEAD_SIZE,
    INCEPTION_MEAN,
    INCEPTION_STD,
    POSITION_OFFSET,
    WHERE_TO_GET,
    Beit3ForRetrieval,
    Beit3ImportError,
)
from dar_lib.models.beit3.tokenizer import DEFAULT_MAX_LENGTH, Beit3Tokenizer
from dar_lib.models.encoders import ImagePreprocessor, _HFDualEncoder


class Beit3Encoder(_HFDualEncoder):
    """BEiT-3 retrieval features: the :class:`~dar_lib.models.base.Encoder` interface over :class:`Beit3ForRetrieval`.

    Image: ``vision_head`` of the class token of the vision-only pass; text: ``language_head`` of
    ``<s>`` of the text-only pass with padding masked; both L2-normalised (unilm's
    ``BEiT3ForRetrieval.forward(only_infer=True)``).

    Args:
        model: a loaded :class:`Beit3ForRetrieval`.
        tokenizer: its :class:`Beit3Tokenizer`.
        preprocess: image preprocessing; default: square bicubic resize to the model's image size,
            mean/std 0.5 (unilm's evaluation transform).
        id: names the weights (for fingerprints).
        revision: for fingerprints (local files have none; the id carries a file hash).
        device: torch device (default ``settings.default_device()``). dtype: torch dtype (default float32).
        batch_size: items per forward pass.
        max_length: text token limit, specials included (default 64, unilm's retrieval setting;
            at most the text position table minus 2).

    Raises:
        Beit3ImportError: a tokenizer whose ids do not fit the model's text embedding.
    """

    kind = "beit3"

    def __init__(self, model: Beit3ForRetrieval, tokenizer: Beit3Tokenizer, preprocess: ImagePreprocessor | None = None,
                 *, id: str = "beit3", revision: str | None = None, device: str | None = None, dtype=None,
                 batch_size: int = 32, max_length: int = DEFAULT_MAX_LENGTH):
        cfg = model.config
        if tokenizer.vocab_size > cfg.vocab_size:
            raise Beit3ImportError(f"{tokenizer.path}: {tokenizer.vocab_size} token ids do not fit the checkpoint's "
                                   f"{cfg.vocab_size}-row text embedding; wrong sentencepiece model?")
        if preprocess is None:
            preprocess = ImagePreprocessor(cfg.img_size, mean=INCEPTION_MEAN, std=INCEPTION_STD, mode="square")
        max_length = min(int(max_length), cfg.max_source_positions - POSITION_OFFSET)
        super().__init__(model, tokenizer, preprocess, id=id, revision=revision, device=device, dtype=dtype,
                         batch_size=batch_size, max_length=max_length)
        self.dim = cfg.embed_dim

    def _text_features(self, input_ids, attention_mask):
        return self.model.text_features(input_ids, padding_mask=attention_mask == 0)

    def _image_features(self, pixel_values):
        return self.model.image_features(pixel_values)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, spm: str | Path, *, image_size: int | None = None,
                        head_size: int = BEIT3_HEAD_SIZE, device: str | None = None, dtype=None,
                        batch_size: int = 32, max_length: int | None = None) -> "Beit3Encoder":
        """Load unilm's checkpoint and sentencepiece model (the ``beit3:<.pth>+<.spm>`` id).

        Args:
            checkpoint: e.g. ``beit3_base_patch16_384_coco_retrieval.pth``.
            spm: the sentencepiece model ``beit3.spm``.
            image_size: pixels (default: the checkpoint's own). head_size: see :func:`load_beit3`.
            device: torch device. dtype: torch dtype. batch_size: items per forward pass.
            max_length: text token limit (default 64).

        Returns:
            The encoder; its ``id`` names both files by name, size and a hash of their first MiB.

        Raises:
            ValueError: a checkpoint or sentencepiece path is not given.
            FileNotFoundError: a file is missing (the message says where to get it).
            Beit3ImportError: the files do not load (see :func:`load_beit3`).
        """

        if not str(checkpoint) or not str(spm):
            raise ValueError(f"a BEiT-3 encoder needs both files, as 'beit3:<checkpoint .pth>+<sentencepiece .spm>' "
                             f"(got checkpoint {str(checkpoint)!r}, sentencepiece model {str(spm)!r}); {WHERE_TO_GET}")
        tok = Beit3Tokenizer(spm)
        model = load_beit3(checkpoint, image_size=image_size, head_size=head_size)
        ck, sp = Path(checkpoint), Path(spm)
        return cls(model, tok, id=f"beit3:{ck.name}#{file_tag(str(ck))}+{sp.name}#{file_tag(str(sp))}",
                   device=device, dtype=dtype, batch_size=batch_size, max_length=max_length or DEFAULT_MAX_LENGTH)
