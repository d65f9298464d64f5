"""Damaged stored results: a cut-off or corrupted audit.npz or embedding map.

Each file is made by the real code on the tiny data (a test-split audit judged by one untrained
checkpoint, which needs no training; a map built with openTSNE on the 200 tiny test images),
then damaged on disk. Reading it must raise CacheDamaged with a message that names the file
without the server's folders and without numpy's allow_pickle advice; `embed` and `audit`
must build it again and say so; the pages must show a message, not an exception.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from mnist_core import audit, embedding
from mnist_core.audit import AuditResult, AuditSpec, create_audit, save_result
from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.cli import main
from mnist_core.config import TrainConfig
from mnist_core.data import load_split
from mnist_core.models import build_model
from mnist_core.storage import CacheDamaged, read_npz

ROOT = Path(__file__).resolve().parent.parent


def cut_off(path: Path, keep: float = 0.5) -> None:
    """Truncate a file to a fraction of its size, as a full disk or a broken copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def assert_plain(message: str, folder: Path) -> None:
    assert "allow_pickle" not in message and "pickle" not in message
    assert str(folder) not in message and "/" + folder.name + "/" not in message


# ---------------------------------------------------------------- the helper


@pytest.fixture
def stored(tmp_path) -> Path:
    path = tmp_path / "arrays.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, xy=rng.normal(size=(3000, 2)).astype(np.float32), labels=np.arange(3000))
    return path


def corrupt_middle(path: Path) -> None:
    """Overwrite bytes inside the compressed data; the zip's directory at the end stays whole."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 64] = bytes(range(64))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (cut_off, "it ends early"),
        (lambda path: path.write_bytes(path.read_bytes()[:2]), "it ends early"),  # not even the zip signature whole
        (lambda path: path.write_bytes(b""), "it is empty"),
        (lambda path: path.write_text("not arrays at all\n"), "it is not a file of stored arrays"),
        (corrupt_middle, "its contents are corrupted"),
    ],
    ids=["cut-in-half", "cut-to-2-bytes", "empty", "text", "corrupted-member"],
)
def test_a_damaged_npz_is_one_exception_that_names_the_file_and_says_what_is_wrong(stored, damage, reason):
    damage(stored)
    with pytest.raises(CacheDamaged) as raised:
        read_npz(stored)
    assert str(raised.value) == f"arrays.npz is damaged ({reason})"
    assert raised.value.reason == reason
    assert_plain(str(raised.value), stored.parent)


def test_an_npz_without_an_array_it_needs_is_damaged_and_a_missing_one_is_absent(stored, tmp_path):
    with pytest.raises(CacheDamaged, match=r"arrays\.npz is damaged \(it lacks mean, components\)"):
        read_npz(stored, required=("xy", "mean", "components"))
    assert read_npz(stored, required=("xy",))["xy"].shape == (3000, 2)
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "missing.npz")


# ---------------------------------------------------------------- the label audit


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> Path:
    """An untrained fast model: a test-split audit judged by it needs no fold models."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("judge") / "judge.pt"
    save_checkpoint(path, make_checkpoint(build_model("fast"), TrainConfig(model="fast"), 1, {}))
    return path


def audit_cli(judge: Path, data_dir: Path, runs_dir: Path, capsys) -> tuple[dict, str]:
    ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        code = main(["audit", "--split", "test", "--checkpoint", str(judge), "--data-dir", str(data_dir),
                     "--runs-dir", str(runs_dir)])
    finally:
        signal.signal(signal.SIGINT, ctrl_c)  # the command takes Ctrl-C over; pytest's own comes back
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def test_a_cut_off_audit_reads_as_damaged_in_plain_words(judge, tiny_data_dir, runs_dir):
    spec = AuditSpec(split="test", checkpoint=str(judge))
    run = create_audit(spec, runs_dir)
    assert audit.execute_audit(run, tiny_data_dir) is not None, run.status().get("message")
    assert audit.load_result(run).probabilities.shape[1] == 10
    cut_off(run.path / audit.RESULT_FILE)
    with pytest.raises(CacheDamaged) as raised:
        audit.load_result(run)
    assert str(raised.value) == f"audit.npz of run {run.id} is damaged (it ends early)"
    assert_plain(str(raised.value), runs_dir)


def test_an_audit_whose_arrays_do_not_fit_together_is_damaged(runs_dir):
    run = create_audit(AuditSpec(), runs_dir)
    save_result(run, AuditResult("train", np.eye(10, dtype=np.float32)[[1, 2]], np.array([1, 3])))
    assert audit.load_result(run).labels.tolist() == [1, 3]
    np.savez(run.path / audit.RESULT_FILE, split=np.array("train"), probabilities=np.ones((2, 10)),
             labels=np.array([1, 3, 5]))  # one label too many
    with pytest.raises(CacheDamaged, match="its arrays do not fit together"):
        audit.load_result(run)


def test_the_audit_command_audits_a_damaged_stored_audit_again_and_says_so(judge, tiny_data_dir, runs_dir, capsys):
    first, _ = audit_cli(judge, tiny_data_dir, runs_dir, capsys)
    assert first["cached"] is False
    again, _ = audit_cli(judge, tiny_data_dir, runs_dir, capsys)
    assert again["cached"] is True and again["run_dir"] == first["run_dir"]

    cut_off(Path(first["run_dir"]) / audit.RESULT_FILE)
    redone, err = audit_cli(judge, tiny_data_dir, runs_dir, capsys)
    damaged_id = Path(first["run_dir"]).name
    assert f"The stored audit.npz of run {damaged_id} is damaged (it ends early); auditing again." in err
    assert_plain(err.split("auditing again.")[0], runs_dir)
    assert redone["cached"] is False and redone["run_dir"] != first["run_dir"]
    assert redone["ranked_indices"] == first["ranked_indices"]  # the same model judged the same images
    after, err = audit_cli(judge, tiny_data_dir, runs_dir, capsys)
    assert after["cached"] is True and after["run_dir"] == redone["run_dir"] and "damaged" not in err


def test_the_audit_tab_says_a_stored_audit_is_damaged_and_what_to_do(studio, tiny_data_dir):
    _, labels = load_split("mnist", True, tiny_data_dir, download_missing=False)
    labels = labels.numpy().astype(np.int64)
    run = create_audit(AuditSpec(), studio)  # the tab's default settings: a training-image audit
    save_result(run, AuditResult("train", np.eye(10, dtype=np.float32)[labels], labels))
    run.update_status(state="finished", seconds=3.0, ended_at=time.time(), progress=1.0)
    cut_off(run.path / audit.RESULT_FILE)

    app = AppTest.from_file(str(ROOT / "pages" / "mistakes.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    errors = [error.value for error in app.error]
    assert f"The stored audit.npz of run {run.id} is damaged (it ends early). Press **Run again**" in " ".join(errors)
    assert_plain(" ".join(errors), studio)
    assert app.button(key="audit_start").label == "Run again"


# ---------------------------------------------------------------- the embedding map


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, tiny_data_dir) -> Path:
    """An untrained fast model with its map (and the map's preview) built on the tiny test images."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mapped") / "default.pt"
    save_checkpoint(path, make_checkpoint(build_model("fast"), TrainConfig(model="fast"), 1, {}))
    embedding.build_map(path, tiny_data_dir)
    return path


@pytest.fixture
def model(mapped, tmp_path) -> Path:
    """A copy of the mapped model with its map and preview, for one test to damage."""
    copy = tmp_path / "model" / mapped.name
    copy.parent.mkdir()
    shutil.copy2(mapped, copy)  # copy2 keeps the modification time the map was built for
    for source in (embedding.map_path(mapped), embedding._preview_path(embedding.map_path(mapped))):
        shutil.copy2(source, copy.with_name(source.name))
    return copy


def test_a_cut_off_map_is_said_once_and_set_aside(model, tiny_data_dir):
    path = embedding.map_path(model)
    assert embedding.load_cached(model, data_dir=tiny_data_dir) is not None
    cut_off(path)
    with pytest.raises(CacheDamaged) as raised:
        embedding.load_cached(model, data_dir=tiny_data_dir)
    assert str(raised.value) == "default.pt.map-test.npz is damaged (it ends early)"
    assert embedding.damaged_note(model, raised.value) == "The stored map for default.pt was damaged (it ends early)"
    assert_plain(str(raised.value), model.parent)
    assert not path.exists() and path.with_name(path.name + ".damaged").is_file()
    assert embedding.load_cached(model, data_dir=tiny_data_dir) is None  # now simply not built


def test_a_map_whose_arrays_do_not_fit_together_is_damaged(model, tiny_data_dir):
    path = embedding.map_path(model)
    arrays = dict(np.load(path))
    arrays["xy"] = arrays["xy"][:-1]  # one point short
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CacheDamaged, match="its arrays do not fit together"):
        embedding.load_cached(model, data_dir=tiny_data_dir)


def test_a_damaged_preview_is_made_again(model, tiny_data_dir):
    preview_path = embedding._preview_path(embedding.map_path(model))
    assert embedding.preview(model, tiny_data_dir).path == preview_path  # the build's saved stand-in
    cut_off(preview_path)
    made = embedding.preview(model, tiny_data_dir)
    assert made.path == Path() and made.xy.shape == (len(made.labels), 2)  # computed here instead
    assert not preview_path.exists() and preview_path.with_name(preview_path.name + ".damaged").is_file()


def test_the_embed_command_builds_a_damaged_map_again_and_says_so(model, tiny_data_dir, capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))  # where the build takes its training slot
    cut_off(embedding.map_path(model))
    code = main(["embed", str(model), "--data-dir", str(tiny_data_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "The stored map for default.pt was damaged (it ends early); building it again." in err
    assert "Traceback" not in err and "allow_pickle" not in err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["cached"] is False and result["points"] == 200
    assert embedding.load_cached(model, data_dir=tiny_data_dir) is not None  # whole again
    code = main(["embed", str(model), "--data-dir", str(tiny_data_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["cached"] is True and "damaged" not in err


def test_the_inside_page_says_the_map_was_damaged_and_offers_to_build_it(model, monkeypatch, tmp_path,
                                                                        tiny_data_dir):
    from tests.test_page_draw import use_default_model

    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "empty-runs"))
    use_default_model(monkeypatch, model)
    st.cache_resource.clear()  # no map of an earlier test's default.pt
    cut_off(embedding.map_path(model))
    app = AppTest.from_file(str(ROOT / "pages" / "inside.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    warnings = [warning.value for warning in app.warning]
    assert any(text.startswith("The stored map for default.pt was damaged (it ends early).") for text in warnings)
    assert_plain(" ".join(warnings), model.parent)
    assert any(button.label.startswith("Build the map") for button in app.button)
    app.run()  # the next run: no map, no note, the button still there
    assert not app.exception and not any("damaged" in warning.value for warning in app.warning)
    assert any(button.label.startswith("Build the map") for button in app.button)
