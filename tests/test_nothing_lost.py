"""Nothing lost, nothing half-written, nothing random (issue 32).

Each test holds one fault found by a careful user: an output written over the command's own input,
a results file cut mid-row by a write error, training that gives other weights on every run, an
output folder checked only after 40 minutes of training, ``--resume`` trusting a record over
damaged weights, damaged weights shown as a traceback, ``dar explore`` announcing an address
another server holds, and weights written owner-only beside world-readable configs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dar_lib.cli import main

DAR = [sys.executable, "-m", "dar_lib.cli"]
#: The smallest recipe that runs every stage of ``dar train-toy`` (about 10 s on one core).
TINY = ["--steps-scale", "0.001", "--n-train", "64", "--batch-size", "8"]


def _one_line(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dar: error: "), err
    return lines[0]


def _no_work(monkeypatch):
    import dar_lib.evaluate

    monkeypatch.setattr(dar_lib.evaluate, "evaluate", lambda *a, **k: pytest.fail("work started"))


def _own_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "photos").mkdir()
    files = {"dialogues": tmp_path / "mine.json", "corpus": tmp_path / "corpus.json"}
    files["dialogues"].write_text(json.dumps([{"img": "a.png", "dialog": ["a red square"]}]))
    files["corpus"].write_text(json.dumps(["a.png"]))
    return files


def _own_eval(files, out) -> list[str]:
    return ["eval", "--quiet", "--benchmark", str(files["dialogues"]), "--corpus-file", str(files["corpus"]),
            "--image-root", str(files["dialogues"].parent / "photos"), "--encoder", "toy:clip-zs", "--out", str(out)]


# -- 1. outputs never over inputs, always whole ------------------------------------------------------------------

@pytest.mark.parametrize("which", ["dialogues", "corpus", "link to dialogues"])
def test_eval_out_naming_one_of_its_inputs_is_refused_and_the_input_kept(which, tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    files = _own_files(tmp_path)
    before = {k: p.read_bytes() for k, p in files.items()}
    out = files[which.rpartition(" ")[2]]
    if which.startswith("link"):
        (tmp_path / "link.csv").symlink_to(out)
        out = tmp_path / "link.csv"
    line = _one_line(capsys, _own_eval(files, out))
    assert f"--out {out}" in line and "is one of this command's inputs" in line
    assert {k: p.read_bytes() for k, p in files.items()} == before


def test_merge_stores_into_one_of_its_sources_is_refused(tmp_path, capsys):
    from dar_lib.store import ArtefactStore

    src = ArtefactStore(tmp_path / "shard0")
    src.put_json("llm", "good", {"v": 1})
    line = _one_line(capsys, ["merge-stores", "--into", str(tmp_path / "shard0"), str(src.root)])
    assert "--into" in line and "is one of this command's inputs" in line


def test_a_write_error_keeps_the_previous_results_file_and_names_it(tmp_path, capsys, monkeypatch):
    """A file-size limit (as a full disk) part-way through the CSV: the old file is whole, the error names it."""
    import dar_lib.evaluate

    table = pd.DataFrame({"benchmark": ["toy-flan"] * 4000, "encoder": ["toy:clip-zs"] * 4000,
                          "dialogue_idx": range(4000), "round_idx": [0] * 4000, "rank": range(4000)})
    monkeypatch.setattr(dar_lib.evaluate, "evaluate", lambda *a, **k: table)
    out = tmp_path / "r.csv"
    old = b"benchmark,rank\n" + b"toy-visdial,17\n" * 3000
    out.write_bytes(old)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))  # Python ignores SIGXFSZ: writes fail with EFBIG
    try:
        code = main(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--quiet", "--out", str(out)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and "File too large" in err, err
    assert out.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]  # no temporary file left


# -- 2. repeatable training --------------------------------------------------------------------------------------

def test_two_runs_of_one_recipe_give_byte_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for run in ("a", "b"):
        proc = subprocess.run(DAR + ["train-toy", *TINY, "--out", str(tmp_path / run)], capture_output=True,
                              text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    weights = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.safetensors"))
    assert len(weights) >= 8 and {w.parts[0] for w in weights} == {"probe", "image-tower", "clip-full", "clip-zs",
                                                                     "clip-cocoft", "clip-chatir", "sd"}
    differ = [str(w) for w in weights if (tmp_path / "a" / w).read_bytes() != (tmp_path / "b" / w).read_bytes()]
    assert differ == []


# -- 3. checks before work ---------------------------------------------------------------------------------------

def test_train_toy_checks_its_output_folder_before_the_first_step(tmp_path, capsys, monkeypatch):
    from dar_lib.benchmarks import toyworld

    monkeypatch.setattr(toyworld, "make_scenes", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "afile").write_text("x")
    line = _one_line(capsys, ["train-toy", "--only", "probe", "--out", str(tmp_path / "afile" / "models")])
    assert str(tmp_path / "afile" / "models") in line


@pytest.mark.parametrize("argv", [["book", "--smoke", "--no-book", "--out"], ["fetch-data", "coco", "--image-root"]])
def test_other_long_commands_check_their_output_folder_first(argv, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    line = _one_line(capsys, argv + [str(tmp_path / "afile" / "sub")])
    assert str(tmp_path / "afile" / "sub") in line


# -- 4. weights are checked, not trusted -------------------------------------------------------------------------

def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a flipped byte in the JSON header
        path.write_bytes(data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])


@pytest.mark.parametrize("how", ["truncated", "empty", "flipped header"])
def test_a_damaged_toy_encoder_is_one_line_naming_the_file(how, tmp_path, capsys):
    from dar_lib.toymodels import ASSETS

    folder = tmp_path / "zs"
    shutil.copytree(ASSETS / "clip-zs", folder)
    _damage(folder / "model.safetensors", how)
    line = _one_line(capsys, ["eval", "--benchmark", "toy-flan", "--encoder", f"toy:{folder}", "--toy-size", "smoke",
                              "--n-dialogues", "1", "--methods", "baseline", "--quiet"])
    assert str(folder / "model.safetensors") in line and "damaged" in line


@pytest.mark.parametrize("kind", ["generator", "probe", "hub folder"])
def test_every_loader_refuses_damaged_weights_naming_the_file(kind, tmp_path):
    from dar_lib import models
    from dar_lib.errors import DataError
    from dar_lib.toymodels import ASSETS
    from dar_lib.toymodels.probe import AttributeProbe

    src = {"generator": ASSETS / "sd", "probe": ASSETS / "probe", "hub folder": ASSETS / "clip-cocoft"}[kind]
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    damaged = sorted(folder.rglob("*.safetensors"))[-1]
    _damage(damaged, "truncated")
    load = {"generator": lambda: models.load_generator(f"toy:{folder}"),
            "probe": lambda: AttributeProbe.load(folder),
            "hub folder": lambda: models.load_encoder(f"clip:{folder}")}[kind]
    with pytest.raises(DataError, match="damaged") as err:
        load()
    assert str(damaged) in str(err.value) and len(str(err.value).splitlines()) == 1


def test_a_damaged_config_is_refused_naming_the_file(tmp_path):
    from dar_lib import models
    from dar_lib.errors import DataError
    from dar_lib.toymodels import ASSETS

    folder = tmp_path / "m"
    shutil.copytree(ASSETS / "sd", folder)
    cfg = folder / "transformer" / "config.json"
    cfg.write_text(cfg.read_text()[:40])
    with pytest.raises(DataError, match="damaged") as err:
        models.load_generator(f"toy:{folder}")
    assert str(cfg) in str(err.value)


def test_resume_retrains_a_finished_stage_whose_weights_are_damaged(tmp_path):
    from dar_lib.toymodels.train import train_all

    out = tmp_path / "models"
    train_all(out, steps_scale=0.001, only=("probe",), n_train=64, batch_size=8, progress=False)
    good = (out / "probe" / "model.safetensors").read_bytes()
    assert "probe" not in train_all(out, 0.001, ("probe",), 64, 8, progress=False, resume=True)  # whole: skipped
    _damage(out / "probe" / "model.safetensors", "truncated")
    report = train_all(out, 0.001, ("probe",), 64, 8, progress=False, resume=True)
    assert "probe" in report  # retrained, not skipped
    assert (out / "probe" / "model.safetensors").read_bytes() == good


# -- 6. dar explore serves where it says -------------------------------------------------------------------------

def test_explore_on_a_taken_port_is_one_line_and_serves_nothing(capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("voila started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line(capsys, ["explore", "--no-browser", "--smoke", "--port", str(port)])
    assert f"port {port}" in line and "in use" in line


# -- 7. permissions like the neighbours --------------------------------------------------------------------------

def test_trained_weights_get_the_same_permissions_as_their_configs(tmp_path):
    from dar_lib.toymodels.train import train_all

    old = os.umask(0o022)
    try:
        train_all(tmp_path / "m", 0.001, ("probe", "image-tower"), 64, 8, progress=False)
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
             for p in (tmp_path / "m").rglob("*") if p.is_file() and ".checkpoints" not in p.parts}
    assert modes and set(modes.values()) == {"0o644"}, modes
