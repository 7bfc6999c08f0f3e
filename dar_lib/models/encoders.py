"""Dual encoders over transformers models (BLIP ITM heads, CLIP) and the RGB conversion all encoders share."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dar_lib import settings
from dar_lib.benchmarks.images import load_image, to_rgb
from dar_lib.cachekeys import file_tag, hash_parts, local_revision, module_weights_digest, tokenizer_digest
from dar_lib.models.blip_import import BLIP_HEAD_SIZE, check_head_layout, load_original_blip

log = logging.getLogger(__name__)

#: What every encoder's ``encode_images`` accepts per image: a PIL image of any mode, a uint8
#: array (H, W), (H, W, 3) or (H, W, 4), or an image file path.
ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike]

#: OpenAI CLIP normalisation, also used by BLIP.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC}


class ImagePreprocessor:
    """Resize (+ optional centre crop) and normalise PIL images with PIL/torch only (no torchvision).

    Args:
        size: output side in pixels (square).
        mean: per-channel mean after scaling to [0, 1].
        std: per-channel standard deviation.
        mode: ``"square"`` resizes straight to ``size`` x ``size`` (BLIP's ``transform_test``);
            ``"shortest_crop"`` resizes the shortest side to ``size`` then centre-crops (CLIP).
        resample: PIL resampling filter (bicubic in both BLIP and CLIP).
    """

    def __init__(self, size: int, mean=CLIP_MEAN, std=CLIP_STD, mode: str = "square",
                 resample: int = Image.BICUBIC):
        if mode not in ("square", "shortest_crop"):
            raise ValueError(f"unknown preprocessing mode {mode!r}; use 'square' or 'shortest_crop'")
        self.size = int(size)
        self.mean = tuple(float(x) for x in mean)
        self.std = tuple(float(x) for x in std)
        self.mode = mode
        self.resample = resample

    def describe(self) -> str:
        """A short string naming every preprocessing choice (part of encoder fingerprints)."""
        return (f"{self.mode}{self.size}-resample{int(self.resample)}-mean{list(self.mean)}"
                f"-std{list(self.std)}")

    def _one(self, image: ImageInput) -> np.ndarray:
        img = as_rgb(image)
        s = self.size
        if self.mode == "square":
            img = img.resize((s, s), resample=self.resample)
        else:
            w, h = img.size
            scale = s / min(w, h)
            nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
            img = img.resize((nw, nh), resample=self.resample)
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
        return np.asarray(img, dtype=np.float32) / 255.0

    def __call__(self, images: Sequence[ImageInput] | ImageInput) -> torch.Tensor:
        """Preprocess images for a forward pass.

        Args:
            images: a list of images (or one), each anything :func:`as_rgb` accepts.

        Returns:
            A float32 tensor (n, 3, size, size), normalised with ``mean`` and ``std``.

        Raises:
            TypeError: an input of another type.
            DataError: a path that is missing or does not decode.
        """
        images = _as_list(images)
        arr = (np.stack([self._one(im) for im in images]) if images
               else np.zeros((0, self.size, self.size, 3), np.float32))
        x = torch.from_numpy(arr).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    @classmethod
    def from_processor_dict(cls, d: dict[str, Any], default_size: int, crop: bool) -> "ImagePreprocessor":
        """Build from a transformers ``preprocessor_config.json`` dict (BLIP or CLIP image processor)."""
        size = d.get("crop_size") if d.get("do_center_crop", crop) and d.get("crop_size") else d.get("size")
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or default_size
        size = int(size or default_size)
        mode = "shortest_crop" if d.get("do_center_crop", crop) else "square"
        resample = _RESAMPLE.get(int(d.get("resample", 3)), Image.BICUBIC)
        return cls(size, d.get("image_mean", CLIP_MEAN), d.get("image_std", CLIP_STD), mode, resample)


def as_rgb(image: ImageInput) -> Image.Image:
    """The one conversion to RGB in front of every encoder: :func:`dar_lib.benchmarks.images.to_rgb`.

    Transparent pixels (RGBA, LA, PA, palettes with a transparent index) are composited on white
    and 16-bit greyscale is scaled to 8 bit, exactly as :func:`~dar_lib.benchmarks.images.load_image`
    does for corpus files, so ``encode_images([Image.open(f)])``, ``encode_images([f])`` and
    ``encode_images([load_image(f)])`` give the same embeddings.

    Args:
        image: a PIL image of any mode; a uint8 array (H, W) greyscale, (H, W, 3) RGB or
            (H, W, 4) RGBA; or a path (``str``/``PathLike``) to an image file.

    Returns:
        A PIL image in mode ``"RGB"``.

    Raises:
        TypeError: any other input (float arrays included: their value range is ambiguous).
        DataError: a path that is missing or does not decode, naming it.
    """
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise TypeError(f"expected a PIL image, an image path or a uint8 array (H, W), (H, W, 3) or (H, W, 4); "
                            f"got a {image.dtype} array of shape {image.shape}")
        # Pillow reads uint8 (H, W) as "L", (H, W, 3) as "RGB" and (H, W, 4) as "RGBA".
        return to_rgb(Image.fromarray(np.ascontiguousarray(image)))
    raise TypeError(f"expected a PIL image, an image path or a uint8 array, got {type(image).__name__}")


def _as_list(images) -> list:
    """One image (PIL, path, single array) or a sequence of them -> a list (a str is one path)."""
    if isinstance(images, (Image.Image, str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        return [images]
    return list(images)


def _processor_dict(path_or_id: str, revision: str | None) -> dict[str, Any]:
    """The image processor settings of a model folder or hub id, or {} when it has none."""
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        d, _ = ImageProcessingMixin.get_image_processor_dict(str(path_or_id), revision=revision)
        return d
    except (OSError, ValueError) as exc:
        log.info("no image processor config for %s (%s); using the model config", path_or_id, exc)
        return {}


def _resolve_dtype(dtype: torch.dtype | str | None, device: str) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        return {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
                "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}[dtype]
    return dtype


#: Truncation policies of an encoder with a text limit: ``right`` keeps the start of a too-long text
#: (every released evaluation), ``left`` keeps its end (the newest turns or rewrites).
TRUNCATION_SIDES = ("right", "left")


class _HFDualEncoder:
    """Shared batching, truncation accounting and normalisation of the encoders (transformers BLIP/CLIP, BEiT-3)."""

    id: str
    dim: int
    kind = "hf"

    def __init__(self, model, tokenizer, preprocess: ImagePreprocessor, *, id: str, revision: str | None,
                 device: str | None, dtype, batch_size: int, max_length: int):
        self.device = device or settings.default_device()
        self.dtype = _resolve_dtype(dtype, self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.id = id
        self.revision = revision
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        #: Texts longer than ``max_length`` tokens seen so far (cut, and reported with a warning).
        self.truncated_texts = 0
        #: Which end of a too-long text is cut (:data:`TRUNCATION_SIDES`; the id option ``?truncation=``).
        self.truncation = "right"

    # -- subclass hooks -------------------------------------------------------------------------
    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    #: Attributes of ``model`` that :meth:`_image_features` uses (and nothing else does it read); empty:
    #: the image side is not separable and :meth:`image_fingerprint` names the whole model.
    _image_modules: tuple[str, ...] = ()

    # -- public API -----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        return (f"{self.kind}:{self.id}@{self.revision or 'unpinned'}|img={self.preprocess.describe()}"
                f"|max_length={self.max_length}|dtype={str(self.dtype).replace('torch.', '')}"
                + ("" if self.truncation == "right" else f"|truncation={self.truncation}"))

    def image_fingerprint(self) -> str:
        """Names the image embeddings alone: the image tower's weights (sha256 of every tensor, as
        loaded), the preprocessing and the dtype. Two encoders with the same image tower (the toy
        variants) share it, so their corpus and generated-image embeddings are computed once."""
        if not self._image_modules:
            return self.fingerprint()
        if getattr(self, "_image_fp", None) is None:
            digest = module_weights_digest([(name, getattr(self.model, name)) for name in self._image_modules])
            self._image_fp = (f"{self.kind}-image:{digest}|img={self.preprocess.describe()}"
                              f"|dtype={str(self.dtype).replace('torch.', '')}")
        return self._image_fp

    def text_fingerprint(self) -> str:
        """Names the text embeddings (it keys cached query-text embeddings): :meth:`fingerprint` (id, revision,
        text limit, truncation side, dtype), the batch size (a chunk is padded to its longest text) and the
        content as loaded: every weight, the model config and the tokenizer, digested once (a local folder's
        ``unpinned`` revision names no content of its own). Settings are read on each call."""
        if getattr(self, "_text_content", None) is None:
            config = getattr(self.model, "config", None)
            self._text_content = hash_parts(
                weights=module_weights_digest([("model", self.model)]),
                config=config.to_json_string() if hasattr(config, "to_json_string") else repr(config),
                tokenizer=tokenizer_digest(self.tokenizer))[:16]
        return f"{self.fingerprint()}|batch={self.batch_size}|text={self._text_content}"

    def _batches(self, items: Sequence, desc: str):
        n = len(items)
        it = range(0, n, self.batch_size)
        if n > 8 * self.batch_size:
            from tqdm import tqdm

            it = tqdm(it, desc=desc, unit="batch")
        for i in it:
            yield items[i:i + self.batch_size]

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts``; returns unit-norm float32 CPU tensor (n, dim).

        Texts longer than ``max_length`` tokens are cut at the end ``truncation`` names (``right``:
        the tokenizer's own truncation, which keeps the start; ``left``: keep the newest text, i.e.
        the first special token and the last ``max_length - 1`` tokens); each one is counted in
        ``truncated_texts`` and reported with a logged warning.

        Raises:
            TypeError: ``texts`` is one string (iterating it would embed each character).
        """
        if isinstance(texts, str):
            raise TypeError(f"{self.id}: encode_text takes a sequence of texts, got one string "
                            f"({texts[:40]!r}); pass [text]")
        texts = [str(t) for t in texts]
        out = []
        for chunk in self._batches(texts, f"encode text ({self.id})"):
            enc = self._tokenize(chunk)
            n_cut = self._count_truncated(chunk)
            if n_cut:
                self.truncated_texts += n_cut
                log.warning("%s: %d of %d texts exceed max_length=%d tokens and were truncated "
                            "(%d so far)", self.id, n_cut, len(chunk), self.max_length, self.truncated_texts)
            feats = self._text_features(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
            out.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def _tokenize(self, chunk: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.truncation == "right":
            return self.tokenizer(list(chunk), padding=True, truncation=True, max_length=self.max_length,
                                  return_tensors="pt", return_overflowing_tokens=False, return_length=False)
        if self.truncation != "left":
            raise ValueError(f"{self.id}: truncation = {self.truncation!r}; "
                             f"choose one of {', '.join(TRUNCATION_SIDES)}")
        # Every tokenizer here wraps a text in one leading and one trailing special token
        # ([CLS]/[SEP], BOS/EOS, <s>/</s>): keep both and the newest max_length - 2 tokens between.
        n = self.max_length
        ids = [x if len(x) <= n else x[:1] + x[len(x) - (n - 1):]
               for x in self.tokenizer(list(chunk), truncation=False, add_special_tokens=True)["input_ids"]]
        longest = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        return {"input_ids": torch.tensor([x + [pad] * (longest - len(x)) for x in ids], dtype=torch.long),
                "attention_mask": torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in ids],
                                               dtype=torch.long)}

    def _count_truncated(self, chunk: Sequence[str]) -> int:
        lengths = self.tokenizer(list(chunk), truncation=False, add_special_tokens=True)["input_ids"]
        return sum(len(ids) > self.max_length for ids in lengths)

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Embed images; returns unit-norm float32 CPU tensor (n, dim).

        Args:
            images: PIL images of any mode, uint8 arrays or image file paths (see :func:`as_rgb`:
                every input goes through the same RGB conversion as the corpus loader). Paths
                are decoded one batch at a time.
        """
        images = _as_list(images)
        out = []
        for chunk in self._batches(images, f"encode images ({self.id})"):
            pixels = self.preprocess(chunk).to(self.device, self.dtype)
            out.append(F.normalize(self._image_features(pixels).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)


class BlipEncoder(_HFDualEncoder):
    """BLIP retrieval features from a transformers ``BlipForImageTextRetrieval``.

    Text: ``text_proj(text_encoder(ids, mask).last_hidden_state[:, 0])``; image:
    ``vision_proj(vision_model(pixels).last_hidden_state[:, 0])``; both L2-normalised, as in
    BLIP's, ChatIR's and DAR's evaluations.

    Args:
        model: a loaded ``BlipForImageTextRetrieval``.
        tokenizer: its (BERT) tokenizer.
        preprocess: image preprocessing; default: square bicubic resize to the vision config's
            image size with CLIP mean/std (BLIP's ``transform_test``).
        id: model id or folder (for fingerprints).
        revision: model revision (for fingerprints).
        device: torch device (default ``settings.default_device()``).
        dtype: torch dtype (default float32).
        batch_size: items per forward pass.
        max_length: text token limit (ChatIR used 200, DAR 256).
    """

    kind = "blip"

    def __init__(self, model, tokenizer, preprocess: ImagePreprocessor | None = None, *, id: str = "blip",
                 revision: str | None = None, device: str | None = None, dtype=None, batch_size: int = 32,
                 max_length: int = 256):
        if preprocess is None:
            preprocess = ImagePreprocessor(model.config.vision_config.image_size, mode="square")
        max_length = min(max_length, model.config.text_config.max_position_embeddings)
        super().__init__(model, tokenizer, preprocess, id=id, revision=revision, device=device, dtype=dtype,
                         batch_size=batch_size, max_length=max_length)
        self.dim = model.text_proj.out_features

    def _text_features(self, input_ids, attention_mask):
        hidden = self.model.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                         return_dict=True).last_hidden_state
        return self.model.text_proj(hidden[:, 0, :])

    _image_modules = ("vision_model", "vision_proj")

    def _image_features(self, pixel_values):
        hidden = self.model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
        return self.model.vision_proj(hidden[:, 0, :])

    @classmethod
    def from_pretrained(cls, path_or_id: str, revision: str | None = None, *, device: str | None = None,
                        dtype=None, batch_size: int = 32, max_length: int | None = None,
                        trust_remote_code: bool = False) -> "BlipEncoder":
        """Load a transformers-layout BLIP retrieval model (hub id or local folder)."""
        from transformers import AutoTokenizer, BlipForImageTextRetrieval

        model = BlipForImageTextRetrieval.from_pretrained(str(path_or_id), revision=revision,
                                                          trust_remote_code=trust_remote_code)
        tok = AutoTokenizer.from_pretrained(str(path_or_id), revision=revision, trust_remote_code=trust_remote_code)
        d = _processor_dict(path_or_id, revision)
        pre = ImagePreprocessor.from_processor_dict(d, model.config.vision_config.image_size, crop=False)
        return cls(model, tok, pre, id=str(path_or_id), revision=local_revision(path_or_id) or revision, device=device,
                   dtype=dtype, batch_size=batch_size, max_length=max_length or 256)

    @classmethod
    def from_original(cls, path: str | Path, base: str = "Salesforce/blip-itm-base-coco", *,
                      revision: str | None = None, image_size: int | None = None, head_size: int | None = None,
                      device: str | None = None, dtype=None, batch_size: int = 32,
                      max_length: int | None = None) -> "BlipEncoder":
        """Load an original-layout BLIP checkpoint (ChatIR's, BLIP's) through :mod:`.blip_import`.

        Args:
            path: the checkpoint (``.pth``/``.ckpt`` read weights-only, or ``.safetensors``).
            base: transformers BLIP id or folder for the config and the tokenizer.
            revision: revision of ``base``.
            image_size: image side in pixels (default: the checkpoint's own; BLIP preprocessing is
                a square bicubic resize to it with CLIP mean/std, BLIP's ``transform_test``).
            head_size: attention head size of the original towers (default 64,
                :data:`~dar_lib.models.blip_import.BLIP_HEAD_SIZE`).
            device: torch device. dtype: torch dtype. batch_size: items per forward pass.
            max_length: text token limit (default 256, DAR's; ChatIR used 200).

        Returns:
            The encoder; its ``id`` names the file by name, size and a hash of its first MiB.

        Raises:
            BlipImportError: the checkpoint does not map, or the base config's head count differs
                from the original layout's (checked before and after building the model).
        """

        head_size = head_size or BLIP_HEAD_SIZE
        model, tok = load_original_blip(path, base, image_size=image_size, revision=revision, head_size=head_size)
        # Also checked here: the encoder must never run an imported model with a wrong head layout.
        check_head_layout(model.config, f"{path} with base config {base}", head_size=head_size)
        pre = ImagePreprocessor(model.config.vision_config.image_size, mode="square")
        return cls(model, tok, pre, id=f"blip-original:{Path(path).name}#{file_tag(str(path))}+{base}",
                   revision=revision, device=device, dtype=dtype, batch_size=batch_size,
                   max_length=max_length or 256)


class ClipEncoder(_HFDualEncoder):
    """CLIP features from a transformers ``CLIPModel`` (projected pooled outputs, L2-normalised), or from
    any dual encoder with CLIP's attribute names (the toy encoders' ``VisionTextDualEncoderModel``).

    Args: as :class:`BlipEncoder`; ``max_length`` is capped at the text model's positions (77 for
    CLIP, 256 for the toy encoders), and images are resized on the shortest side and centre-cropped.
    """

    kind = "clip"

    def __init__(self, model, tokenizer, preprocess: ImagePreprocessor | None = None, *, id: str = "clip",
                 revision: str | None = None, device: str | None = None, dtype=None, batch_size: int = 64,
                 max_length: int | None = None):
        if preprocess is None:
            preprocess = ImagePreprocessor(model.config.vision_config.image_size, mode="shortest_crop")
        limit = model.config.text_config.max_position_embeddings
        super().__init__(model, tokenizer, preprocess, id=id, revision=revision, device=device, dtype=dtype,
                         batch_size=batch_size, max_length=min(max_length or limit, limit))
        self.dim = model.config.projection_dim

    def _text_features(self, input_ids, attention_mask):
        pooled = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask,
                                       return_dict=True).pooler_output
        return self.model.text_projection(pooled)

    _image_modules = ("vision_model", "visual_projection")

    def _image_features(self, pixel_values):
        pooled = self.model.vision_model(pixel_values=pixel_values, return_dict=True).pooler_output
        return self.model.visual_projection(pooled)

    @classmethod
    def from_pretrained(cls, path_or_id: str, revision: str | None = None, *, device: str | None = None,
                        dtype=None, batch_size: int = 64, max_length: int | None = None,
                        trust_remote_code: bool = False, model_class=None) -> "ClipEncoder":
        """Load a ``CLIPModel`` with its tokenizer and image settings (hub id or local folder).

        A folder written by ``save_pretrained`` of a ``CLIPModel`` plus any tokenizer
        (``AutoTokenizer``) and optionally a ``CLIPImageProcessor`` works offline; without an
        image processor config the image size comes from ``config.vision_config.image_size``.

        Args:
            model_class: the transformers class that loads the weights (default ``CLIPModel``); any dual
                encoder with CLIP's attribute names works, e.g. ``AutoModel`` for the toy encoders'
                ``VisionTextDualEncoderModel`` (:mod:`dar_lib.toymodels.cnn_tower`).
        """
        from transformers import AutoTokenizer, CLIPModel

        model_class = model_class or CLIPModel
        model = model_class.from_pretrained(str(path_or_id), revision=revision, trust_remote_code=trust_remote_code)
        tok = AutoTokenizer.from_pretrained(str(path_or_id), revision=revision, trust_remote_code=trust_remote_code)
        d = _processor_dict(path_or_id, revision)
        pre = ImagePreprocessor.from_processor_dict(d, model.config.vision_config.image_size, crop=True)
        return cls(model, tok, pre, id=str(path_or_id), revision=local_revision(path_or_id) or revision, device=device,
                   dtype=dtype, batch_size=batch_size, max_length=max_length)
