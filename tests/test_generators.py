"""Generators on tiny diffusers pipelines (SD3, SD 2.1-style) built from configs, and the image cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dar_lib.models.generators import BlackImageError, CachedGenerator, DiffusersGenerator
from dar_lib.store import ArtefactStore
from dar_lib.testing import tiny_sd3, tiny_sd21

PROMPTS = ["a red cat on the table", "a dog in grass", "a big blue photo", "a small green man"]
SEEDS = [0, 1, 2, 3]


@pytest.fixture(scope="module", params=["sd3", "sd21", "toy"])
def generator(request):
    """Every generator backend, for the contract tests below (written once, run for each): tiny SD3 and SD 2.1
    pipelines built from configs, and the shipped toy generator (32-px images only)."""
    if request.param == "toy":
        from dar_lib.models import load_generator

        return load_generator("toy:sd", device="cpu", batch_size=4)
    pipe = tiny_sd3() if request.param == "sd3" else tiny_sd21()
    return DiffusersGenerator(pipe, f"tiny-{request.param}", default_steps=2, default_guidance=3.0, default_size=32,
                              device="cpu", batch_size=4)


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(np.int16)


def test_shapes_and_determinism(generator):
    a = generator.generate(PROMPTS[:2], SEEDS[:2])
    b = generator.generate(PROMPTS[:2], SEEDS[:2])
    assert [im.size for im in a] == [(32, 32)] * 2 and all(im.mode == "RGB" for im in a)
    assert all(np.array_equal(arr(x), arr(y)) for x, y in zip(a, b))
    assert generator.dtype == torch.float32  # fp32 on CPU
    # Another seed or prompt gives another image.
    c = generator.generate([PROMPTS[0]], [99])[0]
    assert np.abs(arr(c) - arr(a[0])).mean() > 1.0


def test_batched_equals_one_by_one(generator):
    batched = generator.generate(PROMPTS, SEEDS)
    single = [generator.generate([p], [s])[0] for p, s in zip(PROMPTS, SEEDS)]
    for x, y in zip(batched, single):
        assert np.abs(arr(x) - arr(y)).max() <= 1  # at most one grey level of float noise


def test_settings_override(generator):
    if generator.id.startswith("toy:"):  # the toy model draws 32 px only, and says so
        with pytest.raises(ValueError, match="32x32 images only"):
            generator.generate([PROMPTS[0]], [0], size=16)
        img = generator.generate([PROMPTS[0]], [0], steps=1, guidance=1.0)[0]
        assert img.size == (32, 32)
    else:
        img = generator.generate([PROMPTS[0]], [0], steps=1, guidance=1.0, size=16)[0]
        assert img.size == (16, 16)
    assert generator.resolve(None, None, None) == (generator.default_steps, generator.default_guidance,
                                                   generator.default_size)
    assert generator.resolve(1, 1.0, None) == (1, 1.0, generator.default_size)
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        generator.generate(PROMPTS[:2], [0])


class _Out:
    def __init__(self, images):
        self.images = images


class StubPipe:
    """Returns a flat image whose grey level is the seed's first random byte; black for 'black'."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, num_inference_steps, guidance_scale, generator, height=64, width=64, output_type="pil"):
        self.calls.append(list(prompt))
        out = []
        for p, g in zip(prompt, generator):
            level = 0 if p == "black" else int(torch.randint(1, 255, (1,), generator=g))
            out.append(Image.new("RGB", (width, height), (level, level, level)))
        return _Out(out)


def test_all_black_is_rejected():
    gen = DiffusersGenerator(StubPipe(), "stub", default_steps=1, default_guidance=0.0, default_size=8, device="cpu")
    with pytest.raises(BlackImageError, match=r"all-black image for prompt 'black', seed 5"):
        gen.generate(["fine", "black"], [1, 5])


def test_fingerprint():
    gen = DiffusersGenerator(StubPipe(), "sd3:x", revision="r1", device="cpu")
    assert "sd3:x@r1" in gen.fingerprint() and "StubPipe" in gen.fingerprint() and "float32" in gen.fingerprint()


def test_cache_generates_only_misses(tmp_path):
    pipe = StubPipe()
    gen = DiffusersGenerator(pipe, "stub", default_steps=1, default_guidance=0.0, default_size=8, device="cpu",
                             batch_size=2)
    cached = CachedGenerator(gen, ArtefactStore(tmp_path))
    first = cached.generate(["a", "b", "c"], [1, 2, 3])
    assert gen.images_generated == 3 and pipe.calls == [["a", "b"], ["c"]]
    again = cached.generate(["a", "b", "c"], [1, 2, 3])
    assert gen.images_generated == 3  # second call generates nothing
    assert [np.array_equal(arr(x), arr(y)) for x, y in zip(first, again)] == [True] * 3
    # Only the misses are generated, in batches; explicit defaults hit the same entries.
    mixed = cached.generate(["a", "d", "b", "e", "f"], [1, 4, 2, 5, 6], steps=1, guidance=0.0, size=8)
    assert gen.images_generated == 6 and pipe.calls[-2:] == [["d", "e"], ["f"]]
    assert np.array_equal(arr(mixed[0]), arr(first[0])) and np.array_equal(arr(mixed[2]), arr(first[1]))
    # Another setting is another key.
    cached.generate(["a"], [1], steps=2)
    assert gen.images_generated == 7
    assert (cached.hits, cached.misses) == (5, 7)


def test_cache_with_real_pipeline(tmp_path):
    gen = DiffusersGenerator(tiny_sd21(), "tiny-sd21", default_steps=1, default_guidance=2.0, default_size=16,
                             device="cpu")
    cached = CachedGenerator(gen, ArtefactStore(tmp_path))
    a = cached.generate(PROMPTS[:2], SEEDS[:2])
    b = cached.generate(PROMPTS[:2], SEEDS[:2])
    assert gen.images_generated == 2
    assert all(np.array_equal(arr(x), arr(y)) for x, y in zip(a, b))


def test_safety_checker_switched_off():
    pipe = StubPipe()
    pipe.safety_checker = object()
    DiffusersGenerator(pipe, "stub", device="cpu")
    assert pipe.safety_checker is None


def test_factory_loads_local_pipeline_folders(tmp_path):
    from dar_lib.models import load_generator

    pipe = tiny_sd21()
    pipe.save_pretrained(tmp_path / "sd21")
    ref = DiffusersGenerator(pipe, "ref", default_steps=2, default_guidance=3.0, default_size=16, device="cpu")
    for spec in (f"sd:{tmp_path / 'sd21'}", f"diffusers:{tmp_path / 'sd21'}"):
        gen = load_generator(spec, device="cpu")
        assert gen.id == spec and gen.dtype == torch.float32
        assert gen.pipe.safety_checker is None
        img = gen.generate([PROMPTS[0]], [3], steps=2, guidance=3.0, size=16)[0]
        assert np.abs(arr(img) - arr(ref.generate([PROMPTS[0]], [3])[0])).max() <= 1
    gen = load_generator(f"sd:{tmp_path / 'sd21'}", device="cpu")
    assert (gen.default_steps, gen.default_guidance, gen.default_size) == (50, 7.5, 768)


def test_sd21_scheduler_option_is_the_model_cards_and_in_the_cache_key(tmp_path):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    from dar_lib.models import load_generator

    pipe = tiny_sd21()
    pipe.save_pretrained(tmp_path / "sd21")
    default = load_generator(f"sd:{tmp_path / 'sd21'}", device="cpu")
    dpm = load_generator(f"sd:{tmp_path / 'sd21'}?scheduler=dpm-multistep", device="cpu")
    assert isinstance(default.pipe.scheduler, DDIMScheduler) and default.scheduler == "default"
    assert isinstance(dpm.pipe.scheduler, DPMSolverMultistepScheduler)
    # The model card's line: DPMSolverMultistepScheduler.from_config(pipe.scheduler.config), so the
    # repository's betas and v-prediction carry over.
    card = DPMSolverMultistepScheduler.from_config(default.pipe.scheduler.config)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(dpm.pipe.scheduler.config) == public(card.config)
    assert dpm.pipe.scheduler.config.prediction_type == "v_prediction"
    assert dpm.fingerprint() == default.fingerprint() + "|scheduler=dpm-multistep"
    store = ArtefactStore(tmp_path / "store")
    assert CachedGenerator(dpm, store).key(PROMPTS[0], 0, 2, 3.0, 16) != \
        CachedGenerator(default, store).key(PROMPTS[0], 0, 2, 3.0, 16)
    a = default.generate([PROMPTS[0]], [0], steps=3, guidance=3.0, size=16)[0]
    b = dpm.generate([PROMPTS[0]], [0], steps=3, guidance=3.0, size=16)[0]
    assert not np.array_equal(arr(a), arr(b))
    with pytest.raises(ValueError, match=r"option scheduler='euler': choose one of default, dpm-multistep"):
        load_generator(f"sd:{tmp_path / 'sd21'}?scheduler=euler", device="cpu")
    with pytest.raises(ValueError, match=r"unknown option scheduler; backend 'sd3' accepts: no options"):
        load_generator("sd3:stabilityai/stable-diffusion-3-medium-diffusers?scheduler=dpm-multistep")
