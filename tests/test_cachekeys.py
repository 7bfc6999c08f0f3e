"""Cache keys name what was computed: a retrain into the same folder, images replaced under the same
names, another image root, changed ``sd:<folder>`` weights and another GGUF file of the same name each
reach new keys and are recomputed, never replayed (issue 18, item 2)."""

from __future__ import annotations

import shutil
import sys
import types

import pytest
import torch
from PIL import Image

from dar_lib import cachekeys
from dar_lib.benchmarks import load_benchmark
from dar_lib.evaluate import EvalConfig, evaluate, grid
from dar_lib.store import ArtefactStore
from dar_lib.toymodels import ASSETS

SMOKE = dict(toy_size="smoke", n_dialogues=8)
RANK_COLS = ["method", "dialog_idx", "round_idx", "target_id", "rank"]


def test_weights_digest_names_content_not_names(tmp_path):
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_bytes(b"GGUF one"), b.write_bytes(b"GGUF two")
    assert cachekeys.weights_digest(a) != cachekeys.weights_digest(b)
    folder = tmp_path / "sd"
    shutil.copytree(a.parent, folder)
    before = cachekeys.weights_digest(folder)
    (folder / ".checkpoints").mkdir()
    (folder / ".checkpoints" / "run.pt").write_bytes(b"resume state")  # hidden: not part of the model
    assert cachekeys.weights_digest(folder) == before
    (folder / "model.gguf").write_bytes(b"GGUF retrained")
    assert cachekeys.weights_digest(folder) != before
    assert cachekeys.local_revision("stabilityai/not-a-local-folder") is None


def test_grid_recomputes_after_a_retrain_into_the_same_folder(tmp_path, monkeypatch):
    import dar_lib.evaluate as E

    folder = tmp_path / "my-encoder"
    shutil.copytree(ASSETS / "clip-zs", folder)
    calls = []
    real = E.evaluate
    monkeypatch.setattr(E, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = dict(methods=("baseline",), progress=False, store=ArtefactStore(tmp_path / "store"), **SMOKE)
    first = grid(["toy-flan"], {"zero-shot": f"toy:{folder}"}, **kw)
    assert len(grid(["toy-flan"], {"zero-shot": f"toy:{folder}"}, **kw)) == len(first) and len(calls) == 1
    # "Retrain" into the same folder: other weights of the same architecture under the same file names.
    shutil.copy(ASSETS / "clip-full" / "model.safetensors", folder / "model.safetensors")
    second = grid(["toy-flan"], {"zero-shot": f"toy:{folder}"}, **kw)
    assert len(calls) == 2  # the old table is not replayed
    fresh = grid(["toy-flan"], {"zero-shot": "toy:clip-full"}, methods=("baseline",), progress=False,
                 store=ArtefactStore(tmp_path / "fresh"), **SMOKE)
    assert second[RANK_COLS].equals(fresh[RANK_COLS])  # the new weights' ranks, not the old ones
    assert not second[RANK_COLS].equals(first[RANK_COLS])


def _own_data(root):
    from dar_lib.testing import own_dataset

    return own_dataset(root, n_rounds=3, n_images=12, n_dialogues=3)


def _own_cfg(data, **kw):
    return EvalConfig(benchmark=str(data["dialogues"]), corpus_file=str(data["corpus"]),
                      image_root=str(data["images"]), encoder="toy:clip-zs", methods=("baseline",), **kw)


def test_corpus_images_replaced_under_the_same_names_give_new_ranks(tmp_path):
    data = _own_data(tmp_path)
    store = ArtefactStore(tmp_path / "store")
    before = evaluate(_own_cfg(data), store, progress=False)
    # Replace every image under its own name (image i now holds what image i+1 held).
    files = [data["images"] / "set" / f"img_{i:02d}.png" for i in range(12)]
    blobs = [f.read_bytes() for f in files]
    for i, f in enumerate(files):
        f.write_bytes(blobs[(i + 1) % 12])
    after = evaluate(_own_cfg(data), store, progress=False)
    fresh = evaluate(_own_cfg(data), ArtefactStore(tmp_path / "fresh"), progress=False)
    assert not fresh[RANK_COLS].equals(before[RANK_COLS])  # the replacement does change the answer
    assert after[RANK_COLS].equals(fresh[RANK_COLS])


def test_an_image_changed_during_a_run_is_refused(tmp_path):
    from dar_lib.errors import DataError

    data = _own_data(tmp_path)
    bench = load_benchmark(str(data["dialogues"]), image_root=data["images"], corpus_file=data["corpus"])
    target = data["images"] / "set" / "img_03.png"
    target.unlink()
    Image.new("RGB", (24, 24), "red").save(target)  # another file under the name: the stamp changed
    with pytest.raises(DataError, match=r"img_03\.png: the file changed while this run was using it"):
        bench.corpus_images([3])


def test_chatir_image_root_names_the_corpus(mirror, tmp_path):
    a, b = tmp_path / "coco-a", tmp_path / "coco-b"
    a.mkdir(), b.mkdir()
    (tmp_path / "link").symlink_to(a)
    fp = load_benchmark("visdial", 2, image_root=a).fingerprint
    assert load_benchmark("visdial", 2, image_root=b).fingerprint != fp  # a second --image-root recomputes
    assert load_benchmark("visdial", 2, image_root=tmp_path / "link").fingerprint == fp  # the resolved root


class _CountingPipe:
    """Stands in for a diffusers pipeline: counts calls, draws a grey level from the seed."""

    calls = 0

    def __call__(self, prompt, num_inference_steps, guidance_scale, generator, output_type="pil", **kw):
        type(self).calls += 1
        return types.SimpleNamespace(images=[Image.new("RGB", (8, 8), (100, 100, 100)) for _ in prompt])


def test_changed_sd_folder_weights_give_new_images(tmp_path, monkeypatch):
    import diffusers

    from dar_lib.models import load_generator
    from dar_lib.models.generators import CachedGenerator

    folder = tmp_path / "my-sd"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, folder / "unet" / "diffusion_pytorch_model.safetensors")  # weights v1
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_pretrained",
                        classmethod(lambda cls, path, **kw: _CountingPipe()))
    store = ArtefactStore(tmp_path / "store")
    old = CachedGenerator(load_generator(f"sd:{folder}"), store)
    old.generate(["a red cat"], [0])
    assert old.misses == 1 and CachedGenerator(load_generator(f"sd:{folder}"), store).generate(["a red cat"], [0])
    save_file({"w": torch.ones(2)}, folder / "unet" / "diffusion_pytorch_model.safetensors")  # weights v2
    new = CachedGenerator(load_generator(f"sd:{folder}"), store)
    assert new.fingerprint() != old.fingerprint()
    new.generate(["a red cat"], [0])
    assert new.misses == 1 and new.hits == 0  # generated again with the new weights, not replayed


def test_two_gguf_files_with_the_same_name_keep_separate_llm_caches(tmp_path, monkeypatch):
    from dar_lib.models import reformulate as R

    class Llama:
        def __init__(self, model_path, **kw):
            self.text = open(model_path, "rb").read().decode()

        def create_chat_completion(self, messages, **kw):
            return {"choices": [{"message": {"content": f"a photo of a {self.text} dog"}}]}

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=Llama))
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_text("red"), b.write_text("blue")
    store = ArtefactStore(tmp_path / "store")
    first = R.CachedReformulator(R.LlamaCppReformulator(a), store)
    second = R.CachedReformulator(R.LlamaCppReformulator(b), store)
    assert first.fingerprint() != second.fingerprint()
    dialog = ["a dog on grass"]
    assert "red" in first.rewrite(dialog)
    assert "blue" in second.rewrite(dialog) and second.misses == 1 and second.hits == 0


def test_a_chapter_reruns_when_a_folder_its_parameters_name_changes(tmp_path):
    from dar_lib.book import run as book_run

    nb = tmp_path / "08_claims.ipynb"
    nb.write_text("{}")
    folder = tmp_path / "retrained"
    shutil.copytree(ASSETS / "clip-zs", folder)
    records = tmp_path / "records"  # where chapters write: its changes must not re-run them
    records.mkdir()
    params = {"encoders": {"zero-shot": f"toy:{folder}"}, "generator": "toy:sd", "n_dialogues": 20,
              "records_dir": str(records)}
    base = cachekeys.chapter_stamp(nb, params, "lib", outputs=book_run.OUTPUT_PARAMETERS)
    (records / "01_data.json").write_text("{}")
    assert cachekeys.chapter_stamp(nb, params, "lib", outputs=book_run.OUTPUT_PARAMETERS) == base
    shutil.copy(ASSETS / "clip-full" / "model.safetensors", folder / "model.safetensors")  # retrain, same folder
    assert cachekeys.chapter_stamp(nb, params, "lib", outputs=book_run.OUTPUT_PARAMETERS) != base
    assert cachekeys.named_paths(params["encoders"]) == [folder.resolve()]
    assert cachekeys.named_paths({"e": "gguf:" + str(folder / "model.safetensors") + "?fallback=true",
                                  "url": "openai:gpt@https://example.org/v1"}) == [
        (folder / "model.safetensors").resolve()]


def test_the_keys_once_made_elsewhere_are_made_here(tmp_path):
    """Corpus fingerprints, toy training run ids, an image tower's weights digest and the status page's
    record digest come from dar_lib.cachekeys (#33 item 3); each changes with what it names."""
    import torch

    from dar_lib import cachekeys as ck

    a = ck.corpus_key(["x.png", "y.png"], tmp_path)
    assert a == ck.corpus_key(["x.png", "y.png"], str(tmp_path) + "/.")  # the resolved root
    assert a != ck.corpus_key(["y.png", "x.png"], tmp_path) != ck.corpus_key(["x.png", "y.png"], tmp_path / "o")
    assert ck.corpus_key(["x.png"], tmp_path, [(1, 2, 3)]) != ck.corpus_key(["x.png"], tmp_path, [(1, 2, 4)])

    run = ck.training_run_key(stage="clip-zs", steps=10, base=None)
    assert len(run) == 16 and run == ck.training_run_key(base=None, steps=10, stage="clip-zs")
    assert run != ck.training_run_key(stage="clip-zs", steps=11, base=None)

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    before = ck.module_weights_digest([("v", net)])
    net[1].num_batches_tracked += 1  # a 0-d buffer counts too
    assert len(before) == 16 and ck.module_weights_digest([("v", net)]) != before
    assert ck.module_weights_digest([("w", net)]) != ck.module_weights_digest([("v", net)])

    (tmp_path / "a.json").write_text("1")
    (tmp_path / "b.json").write_text("2")
    d = ck.files_digest([tmp_path / "a.json", tmp_path / "b.json"])
    (tmp_path / "b.json").write_text("3")
    assert d != ck.files_digest([tmp_path / "a.json", tmp_path / "b.json"])
