"""The parameter table: profiles, smoke sizes, the schema and the errors that name a bad parameter."""

from __future__ import annotations

import pytest

from dar_lib import profiles
from dar_lib.profiles import ParameterError


def test_profiles_and_smoke_overrides():
    toy = profiles.parameters("toy")
    smoke = profiles.parameters("toy", smoke=True)
    assert toy["profile"] == "toy" and toy["n_dialogues"] > smoke["n_dialogues"] and smoke["smoke"] is True
    assert profiles.parameters("paper")["benchmarks"] == ["visdial", "chatgpt_blip2", "human_blip2", "flan_blip2"]
    smoke["encoders"]["zero-shot"] = "changed"  # a fresh copy every call
    assert profiles.parameters("toy", smoke=True)["encoders"]["zero-shot"] == "toy:clip-zs"
    with pytest.raises(ParameterError, match="'profile' = 'gpu'"):
        profiles.parameters("gpu")
    # every profile value satisfies the schema, and every schema name has a value in every profile
    for name in profiles.PROFILES:
        assert set(profiles.PROFILES[name]) == set(profiles.SCHEMA)
        profiles.validate(profiles.PROFILES[name])


def test_the_cli_and_the_pipeline_take_their_defaults_from_the_table():
    from dar_lib.evaluate import EvalConfig
    from dar_lib.pipeline import DEFAULT_IMAGE_REDUCE, DEFAULT_SCHEDULE

    toy = profiles.PROFILES["toy"]
    cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs")
    assert (cfg.k_images, cfg.schedule, cfg.image_reduce, cfg.generator, cfg.reformulator, cfg.seed_per_round) == (
        toy["k_images"], toy["schedule"], toy["image_reduce"], toy["generator"], toy["reformulator"],
        toy["seed_per_round"])
    assert (DEFAULT_SCHEDULE, DEFAULT_IMAGE_REDUCE) == (toy["schedule"], toy["image_reduce"])
    from dar_lib.cli import build_parser, fusion_settings
    from dar_lib.protocols import RELEASED_SETTINGS

    args = build_parser().parse_args(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs"])
    assert (*fusion_settings(args), args.generator) == (
        toy["k_images"], toy["schedule"], toy["image_reduce"], toy["generator"])
    args = build_parser().parse_args(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs",
                                      "--protocol", "released"])
    assert fusion_settings(args) == (RELEASED_SETTINGS["k_images"], RELEASED_SETTINGS["schedule"],
                                     RELEASED_SETTINGS["image_reduce"])


@pytest.mark.parametrize("name, value, fragment", [
    ("benchmarks", ["toy-flan"], "list of 4 benchmarks"),            # papermill -y '{benchmarks: [toy-flan]}'
    ("benchmarks", "['toy-flan']", "list of 4 benchmarks"),          # papermill -p benchmarks "['toy-flan']"
    ("n_dialogues", "5", "integer"),                                  # papermill -r n_dialogues 5
    ("k_images", 0, "1..10"),
    ("schedule", "sometimes", "unknown schedule"),
    ("image_reduce", "max", "'mean', 'sum'"),
    ("encoders", {"zero-shot": "toy:clip-zs"}, "coco-ft"),
    ("encoders", {"zero-shot": "nope:x", "coco-ft": "toy:a", "dialogue-ft": "toy:b"}, "zero-shot"),
    ("generator", "dalle:3", "unknown generator backend"),
    ("n_boot", 2, ">= 10"),
    ("k_values", [1, 0], "1..10"),
    ("smoke", "yes", "True or False"),
    ("device", "bogus", "torch device string"),                      # dar book --set device=bogus
    ("device", "", "torch device string"),
])
def test_a_bad_value_names_the_parameter(name, value, fragment):
    with pytest.raises(ParameterError, match=rf"parameter '{name}' = .*{fragment}"):
        profiles.validate({name: value})


def test_unknown_parameters_are_refused():
    with pytest.raises(ParameterError, match="unknown parameter 'n_dialog'"):
        profiles.validate({"n_dialog": 3})


def test_chapter_parameters_fill_none_from_the_profile():
    ns = {"profile": "toy", "smoke": True, "n_dialogues": None, "k_images": 1, "encoders": None, "other": 5}
    p = profiles.chapter_parameters(ns)
    assert p["n_dialogues"] == profiles.SMOKE["n_dialogues"] and p["k_images"] == 1
    assert p["encoders"]["zero-shot"] == "toy:clip-zs" and "other" not in p
    with pytest.raises(ParameterError, match="'k_images' = 0"):
        profiles.chapter_parameters({**ns, "k_images": 0})


def test_the_released_protocol_parameter_reaches_every_chapter_config():
    from dar_lib import chapters
    from dar_lib.evaluate import EvalConfig

    params = profiles.parameters("toy", smoke=True, protocol="released")
    kw = chapters.eval_kwargs(params)
    assert (kw["protocol"], kw["k_images"], kw["schedule"], kw["image_reduce"]) == ("released", 1, "released", "mean")
    EvalConfig(benchmark="toy-visdial", encoder="toy:clip-zs", **kw)  # a valid config
    # A sweep of a setting the release fixes (Section 5.3's K) runs under the default protocol, and says so.
    sweep = chapters.eval_kwargs(params, k_images=3)
    assert (sweep["protocol"], sweep["k_images"], sweep["schedule"]) == ("default", 3, params["schedule"])
    EvalConfig(benchmark="toy-visdial", encoder="toy:clip-zs", **sweep)
    # The released-protocol section names its protocol: the release's settings, whatever the book's.
    section = chapters.eval_kwargs(profiles.parameters("toy", smoke=True), protocol="released")
    assert (section["k_images"], section["schedule"]) == (1, "released")
    with pytest.raises(profiles.ParameterError, match="parameter 'protocol'"):
        profiles.parameters("toy", protocol="eval.py")


def test_dar_book_refuses_a_bad_device_before_running_anything(tmp_path, capsys):
    from dar_lib.cli import main

    rc = main(["book", "--set", "device=bogus", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "parameter 'device' = 'bogus'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
    profiles.validate({"device": "cuda:1"})  # a device this machine may lack is the run's concern, not the schema's
