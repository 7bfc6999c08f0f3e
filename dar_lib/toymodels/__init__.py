"""Toy models trained on the toy world: a CLIP-style dual encoder, a text-to-image diffusion model, a probe."""

from pathlib import Path

#: Where the shipped weights live (``dar_lib/assets/toy/<name>``).
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "toy"


def weights_digest(folder: Path) -> str:
    """sha256 (first 12 hex digits) of every weights file under ``folder``: names a trained model in
    fingerprints, so retrained weights never reuse images or embeddings cached for the old ones."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.safetensors")):
        h.update(path.relative_to(folder).as_posix().encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]
