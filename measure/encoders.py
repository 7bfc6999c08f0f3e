"""Encoder throughput (images/s, texts/s) of BLIP-base- and CLIP-B/16-shaped random models on CPU.

Randomly initialised models have the real models' compute; nothing is downloaded.
Usage: ``python measure/encoders.py [--images 16] [--texts 64] [--device cpu]``.
The last printed line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from PIL import Image

from dar_lib import testing


def build(kind: str, device: str):
    """A BLIP-base- or CLIP-B/16-shaped encoder (:data:`dar_lib.testing.SHAPES` ``["paper"]``), random weights,
    with a word-level tokenizer of the real one's size (texts are ``w0`` ... ``w999``; BERT's specials around
    each)."""
    from dar_lib.models.encoders import BlipEncoder, ClipEncoder

    shapes = testing.SHAPES["paper"]
    if kind == "blip-base-224":
        tok = testing.word_tokenizer(512, words=(), vocab_size=shapes["blip"]["vocab_size"])
        return BlipEncoder(testing.blip_model(shapes["blip"], len(tok)), tok, id=kind, device=device, batch_size=16,
                           max_length=256)
    tok = testing.word_tokenizer(77, words=(), vocab_size=shapes["clip"]["vocab_size"])
    return ClipEncoder(testing.clip_model(shapes["clip"], tok), tok, id=kind, device=device, batch_size=16)


def bench(enc, n_images: int, n_texts: int) -> dict:
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(n_images)]
    # Dialogue-length texts: about 60 words (ChatIR queries at late rounds are longer still).
    texts = [" ".join(f"w{j}" for j in rng.integers(0, 1000, 60)) for _ in range(n_texts)]
    enc.encode_images(ims[:2])
    enc.encode_text(texts[:2])  # warm-up
    t = time.perf_counter()
    enc.encode_images(ims)
    t_img = time.perf_counter() - t
    t = time.perf_counter()
    enc.encode_text(texts)
    t_txt = time.perf_counter() - t
    return {"images_per_s": round(n_images / t_img, 2), "texts_per_s": round(n_texts / t_txt, 2),
            "n_images": n_images, "n_texts": n_texts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    result = {"device": args.device, "torch_threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine()}
    if args.device.startswith("cuda"):
        result["card"] = torch.cuda.get_device_name(0)
    for kind in ("blip-base-224", "clip-b16-224"):
        t = time.perf_counter()
        enc = build(kind, args.device)
        build_s = time.perf_counter() - t
        result[kind] = bench(enc, args.images, args.texts) | {"build_s": round(build_s, 1)}
        print(kind, result[kind], flush=True)
        del enc
    print(json.dumps(result))


if __name__ == "__main__":
    main()
