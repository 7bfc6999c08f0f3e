"""unilm's BEiT-3 text tokenisation (fairseq's id mapping over ``sentencepiece``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from dar_lib.models.beit3.modeling import WHERE_TO_GET, Beit3ImportError

#: Text length of unilm's retrieval fine-tuning (``--num_max_bpe_tokens 64``).
DEFAULT_MAX_LENGTH = 64


class Beit3Tokenizer:
    """unilm's BEiT-3 text tokenisation over ``sentencepiece`` (transformers 4's slow ``XLMRobertaTokenizer``).

    Ids: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, a sentencepiece piece of id ``i > 0`` is
    ``i + 1`` (fairseq offset) and ``<mask>`` is ``len(pieces) + 1``. A text becomes ``<s>`` + its
    pieces + ``</s>``; truncation keeps the first ``max_length - 2`` pieces, as unilm's
    ``_get_text_segment`` does. Called like a transformers tokenizer (the subset the encoders use).
    Literal special-token strings inside a text (``"<s>"``) are encoded as plain text.

    Args:
        spm_path: the sentencepiece model (``beit3.spm``).

    Raises:
        FileNotFoundError: no such file. Beit3ImportError: a file sentencepiece cannot load.
    """

    bos_token_id, pad_token_id, eos_token_id, unk_token_id = 0, 1, 2, 3
    fairseq_offset = 1

    def __init__(self, spm_path: str | Path):
        import sentencepiece

        path = Path(spm_path)
        if not path.is_file():
            raise FileNotFoundError(f"BEiT-3 sentencepiece model not found: {path}; {WHERE_TO_GET}")
        self.path = path
        self.sp = sentencepiece.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as exc:
            raise Beit3ImportError(f"{path}: not a sentencepiece model ({exc})") from exc
        self.mask_token_id = len(self.sp) + self.fairseq_offset

    @property
    def vocab_size(self) -> int:
        """Ids in use: the pieces plus the fairseq specials and ``<mask>``."""
        return len(self.sp) + self.fairseq_offset + 1

    def tokenize(self, text: str) -> list[str]:
        """Sentencepiece pieces of ``text``."""
        return self.sp.encode(str(text), out_type=str)

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Piece -> id with the fairseq mapping (unknown pieces -> ``<unk>`` 3)."""
        special = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        out = []
        for t in tokens:
            if t in special:
                out.append(special[t])
                continue
            i = self.sp.piece_to_id(t)
            out.append(i + self.fairseq_offset if i else self.unk_token_id)
        return out

    def encode(self, text: str, max_length: int | None = None, add_special_tokens: bool = True) -> list[int]:
        """Ids of one text (``<s>`` ... ``</s>``), cut to ``max_length`` ids when given."""
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        if not add_special_tokens:
            return ids[:max_length] if max_length is not None else ids
        if max_length is not None:
            ids = ids[:max(max_length - 2, 0)]
        return [self.bos_token_id] + ids + [self.eos_token_id]

    def __call__(self, texts: Sequence[str] | str, padding: bool = False, truncation: bool = False,
                 max_length: int | None = None, return_tensors: str | None = None,
                 add_special_tokens: bool = True, **_ignored) -> dict:
        """Tokenise a batch into ``{"input_ids", "attention_mask"}``: lists, or padded int64 tensors.

        Args:
            texts: one text or a list.
            padding: pad to the longest text with ``<pad>`` (1) (implied by ``return_tensors``).
            truncation: cut each text to ``max_length`` ids (specials included).
            max_length: the id limit used when ``truncation`` is on.
            return_tensors: ``"pt"`` for int64 tensors (n, longest).
            add_special_tokens: wrap in ``<s>`` ... ``</s>``.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        limit = max_length if truncation else None
        ids = [self.encode(t, limit, add_special_tokens) for t in texts]
        mask = [[1] * len(x) for x in ids]
        if padding or return_tensors:
            longest = max((len(x) for x in ids), default=0)
            ids = [x + [self.pad_token_id] * (longest - len(x)) for x in ids]
            mask = [m + [0] * (longest - len(m)) for m in mask]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids, dtype=torch.long).reshape(len(ids), -1),
                    "attention_mask": torch.tensor(mask, dtype=torch.long).reshape(len(ids), -1)}
        return {"input_ids": ids, "attention_mask": mask}
