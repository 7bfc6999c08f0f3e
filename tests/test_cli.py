"""The command line: a user's mistake is one line (`dar: error: ...`, exit status 2), a traceback only with -v."""

from __future__ import annotations

import pytest

from dar_lib.cli import main

EVAL = ["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--toy-size", "smoke", "--n-dialogues", "2",
        "--quiet"]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("option, value, fragment", [
    ("--steps", "0", "argument --steps: must be an integer in 1..1000, got '0'"),
    ("--batch-size", "0", "argument --batch-size: must be an integer in 1..4096"),
    ("-k", "11", "argument -k/--k-images: must be an integer in 1..10"),
    ("--guidance", "nan", "argument --guidance: must be a number in [0, 50]"),
    ("--n-dialogues", "-3", "argument --n-dialogues: must be an integer >= 1"),
    ("--size", "abc", "argument --size: must be an integer"),
])
def test_numeric_options_are_range_checked_before_any_work(option, value, fragment, capsys):
    code, err = _run(EVAL + [option, value], capsys)
    assert code == 2 and fragment in err and "Traceback" not in err


def test_a_user_error_is_one_line_with_status_2(capsys):
    rc = main(["eval", "--benchmark", "nosuch", "--encoder", "toy:clip-zs", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("dar: error: unknown benchmark 'nosuch'") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_verbose_shows_the_traceback():
    with pytest.raises(ValueError, match="unknown benchmark 'nosuch'"):
        main(["-v", "eval", "--benchmark", "nosuch", "--encoder", "toy:clip-zs", "--quiet"])


def test_a_model_that_needs_the_hub_says_so_and_where_to_read(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["eval", "--benchmark", "toy-flan", "--encoder", "blip:Salesforce/blip-itm-base-coco", "--toy-size",
               "smoke", "--n-dialogues", "2", "--methods", "baseline", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "blip:Salesforce/blip-itm-base-coco" in err and "Paper scale" in err
    assert "Traceback" not in err


def test_bad_setting_in_a_config_is_named(capsys):
    rc = main(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--schedule", "sometimes", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "schedule" in err and "sometimes" in err


def test_other_commands_check_their_numbers_too(capsys):
    code, err = _run(["fetch-data", "coco", "--workers", "0", "--image-root", "/tmp/x"], capsys)
    assert code == 2 and "--workers" in err
    code, err = _run(["train-toy", "--steps-scale", "0"], capsys)
    assert code == 2 and "--steps-scale" in err


@pytest.mark.parametrize("extra, fragment", [
    (["--device", "bogus"], "device = 'bogus': not a torch device"),
    (["--methods", "dar,dar"], "each method at most once"),
    (["--image-root", "/tmp"], "renders its own corpus"),
    (["--ray-address", "auto"], "--ray-address 'auto' needs --backend ray"),
    (["--shard", "0/2", "--out", "ranks.csv"], "--out with --shard"),
], ids=["device", "methods", "image-root", "ray-address", "shard-out"])
def test_options_that_cannot_apply_are_refused_before_any_work(extra, fragment, capsys, monkeypatch):
    import dar_lib.evaluate

    def no_work(*a, **k):
        raise AssertionError("the evaluation started before the options were checked")

    monkeypatch.setattr(dar_lib.evaluate, "evaluate", no_work)
    rc = main(EVAL + extra)
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err and "Traceback" not in err


def test_cuda_on_a_machine_without_it_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc = main(EVAL + ["--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and "CUDA is not available" in err and "Traceback" not in err


def test_every_benchmark_is_checked_before_the_first_runs(capsys, monkeypatch):
    import dar_lib.evaluate

    monkeypatch.setattr(dar_lib.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking"))
    rc = main(EVAL + ["--benchmark", "toy-nope"])
    assert rc == 2 and "unknown benchmark 'toy-nope'" in capsys.readouterr().err


def test_bad_output_paths_are_refused_before_any_work(capsys, monkeypatch, tmp_path):
    import dar_lib.evaluate

    monkeypatch.setattr(dar_lib.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking"))
    rc = main(EVAL + ["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "is a folder" in err and "Traceback" not in err
    (tmp_path / "afile").write_text("x")
    rc = main(EVAL + ["--out", str(tmp_path / "afile" / "ranks.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("dar: error:") and "Traceback" not in err


def test_merging_a_folder_that_is_not_a_store_is_an_error(capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    rc = main(["merge-stores", "--into", str(tmp_path / "into"), str(tmp_path / "photos")])
    assert rc == 2 and "holds no store entries" in capsys.readouterr().err


def test_merge_stores_reports_damaged_entries_and_keeps_them(capsys, tmp_path):
    from dar_lib.store import ArtefactStore

    src = ArtefactStore(tmp_path / "shard0")
    src.put_json("llm", "good", {"v": 1})
    src.put_json("llm", "bad", {"v": 2})
    bad = src.path("llm", "bad")
    bad.write_bytes(b"XXXX" + bad.read_bytes()[4:])
    rc = main(["merge-stores", "--into", str(tmp_path / "into"), str(src.root)])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"{src.root}: copied 1 entries into {(tmp_path / 'into').resolve()}; 1 damaged entries not copied" in out
    assert f"{bad}: bad header" in out and bad.exists()


def test_a_shard_of_methods_that_need_no_images_is_refused_up_front(capsys, monkeypatch):
    import dar_lib.evaluate as E

    monkeypatch.setattr(E, "load_bench", lambda cfg: pytest.fail("work started"))
    rc = main(EVAL + ["--shard", "0/2", "--methods", "baseline"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "--shard 0/2 with methods baseline: a shard run only generates its share of the images" in err
    with pytest.raises(ValueError, match="would compute nothing useful"):
        E.evaluate(E.EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", methods=("reformulated",)), shard=(1, 2))


def test_protocol_released_fixes_its_settings_and_reports_truncation(tmp_path, capsys):
    out = tmp_path / "ranks.csv"
    argv = ["eval", "--benchmark", "toy-visdial", "--encoder", "toy:clip-zs?max_length=40", "--toy-size", "smoke",
            "--n-dialogues", "2", "--quiet", "--methods", "reformulated", "--protocol", "released",
            "--store", str(tmp_path / "store"), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "text cut by the encoder's limit, % of queries per round (cut / newest text lost entirely)" in printed
    import pandas as pd

    table = pd.read_csv(out)
    assert set(table["protocol"]) == {"released"} and set(table["k_images"]) == {1}
    assert set(table["schedule"]) == {"released"} and table["text_cut"].any()
    rc = main(argv[:-2] + ["--schedule", "paper"])
    err = capsys.readouterr().err
    assert rc == 2 and "dar: error: schedule = 'paper': the released protocol fixes schedule = 'released'" in err


def test_building_the_parser_imports_no_torch():
    """`dar --help` and every argument check answer without loading torch (about a second on 2 cores) or pandas
    (a quarter of a second): the settings read the fusion schedules from dar_lib.fusion_weights, not
    dar_lib.fuse, and `dar eval` imports dar_lib.stats when it runs."""
    import subprocess
    import sys

    code = ("import sys; from dar_lib.cli import build_parser; build_parser(); "
            "print([m for m in ('torch', 'transformers', 'diffusers', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
