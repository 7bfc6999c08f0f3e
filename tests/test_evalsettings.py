"""Each evaluation setting is declared once (dar_lib.evalsettings): the CLI, the profile table, EvalConfig and the
chapters' parameters agree with it, and a bad value is refused with the same words everywhere."""

from __future__ import annotations

import dataclasses

import pytest

from dar_lib import evalsettings
from dar_lib.chapters import EVAL_KEYS
from dar_lib.cli import build_parser
from dar_lib.evaluate import EvalConfig, provenance
from dar_lib.profiles import PROFILES, ParameterError, validate

#: One bad value per setting, with the words its refusal must contain.
BAD = {
    "k_images": (11, "must be an integer in 1..10"),
    "schedule": ("fast", "schedule = 'fast'"),
    "image_reduce": ("max", "must be one of 'mean', 'sum'"),
    "world_seed": (-1, "must be an integer >= 0"),
    "gen_seed": (1.5, "must be an integer >= 0"),
    "seed_per_round": ("yes", "must be True or False"),
    "steps": (0, "must be an integer in 1..1000"),
    "guidance": (51.0, "must be a number in [0, 50]"),
    "size": (12, "must be a multiple of 8 pixels"),
    "toy_size": ("huge", "must be one of 'default', 'smoke'"),
    "protocol": ("eval.py", "must be one of 'default', 'released'"),
    "n_dialogues": (0, "must be an integer >= 1"),
    "batch_size": (0, "must be an integer in 1..4096"),
    "llm_timeout": (0, "must be a number in [0.01, 3600]"),
    "llm_deadline": (float("nan"), "must be a number in [0.01, 86400]"),
}


def _cli_defaults() -> dict:
    return vars(build_parser().parse_args(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs"]))


def test_every_setting_has_a_bad_value_here():
    assert set(BAD) == set(evalsettings.SETTINGS)


def test_cli_defaults_agree_with_the_toy_profile():
    cli, toy = _cli_defaults(), PROFILES["toy"]
    # k_images, schedule, image_reduce are left unset on the CLI and filled from the protocol (cli.fusion_settings)
    from dar_lib.cli import fusion_settings

    filled = dict(zip(("k_images", "schedule", "image_reduce"), fusion_settings(build_parser().parse_args(
        ["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs"]))))
    compared = 0
    for name in evalsettings.SETTINGS:
        value = filled.get(name, cli[name])
        assert value == evalsettings.default(name), name
        # n_dialogues: the book samples 150 dialogues per benchmark, dar eval runs all of them unless told
        if name in toy and name != "n_dialogues":
            assert value == toy[name], \
                f"dar eval's default of {name} ({value!r}) is not the toy profile's ({toy[name]!r})"
            compared += 1
    assert compared >= 10


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_refused_in_the_same_words_everywhere(name):
    value, words = BAD[name]
    with pytest.raises(ValueError) as direct:
        evalsettings.check(name, value)
    assert str(direct.value).startswith(f"{name} = {value!r}: ") and words in str(direct.value)
    with pytest.raises(ValueError) as cfg:
        EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", **{name: value})
    assert str(cfg.value) == str(direct.value)
    if evalsettings.SETTINGS[name].chapter:
        with pytest.raises(ParameterError) as param:
            validate({name: value})
        assert f"'{name}'" in str(param.value) and str(direct.value).split(": ", 1)[1] in str(param.value)


def test_dar_eval_k_images_11_exits_2_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--k-images", "11"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--k-images" in err and "must be an integer in 1..10" in err


def test_cli_options_and_chapter_keys_come_from_the_declaration():
    cli = _cli_defaults()
    assert set(evalsettings.SETTINGS) <= set(cli)
    assert set(evalsettings.NAMES) <= set(EVAL_KEYS)
    assert {f.name for f in dataclasses.fields(EvalConfig)} >= set(EVAL_KEYS)


def test_provenance_columns_are_the_declared_set():
    cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", k_images=2, gen_seed=7)
    cols = evalsettings.provenance_columns(cfg)
    assert tuple(cols) == evalsettings.PROVENANCE
    assert cols["k_images"] == 2 and cols["gen_seed"] == 7
    row = provenance(cfg, {})
    settings_cols = [c for c in row if c in evalsettings.SETTINGS]
    assert settings_cols == list(evalsettings.PROVENANCE)
    assert "n_dialogues" not in row and "batch_size" not in row
