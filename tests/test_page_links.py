"""Links that open a state, and the Mistakes page's comparison, under AppTest (tiny data, two weak runs).

A link's parameters are what `st.query_params` holds when the page first runs; the page writes its
state back into them, so the address bar is always a link to what is shown.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import mnist_core.inference
import ui.state
from mnist_core.compare import compare
from mnist_core.config import TrainConfig
from mnist_core.jobs import execute_run
from mnist_core.runs import create_run

ROOT = Path(__file__).resolve().parent.parent
MISTAKES, TRAIN = str(ROOT / "pages" / "mistakes.py"), str(ROOT / "pages" / "train.py")
WEAK = TrainConfig(model="fast", epochs=1, batch_size=32, lr=0.003, train_subset=64)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_data_dir) -> tuple[Path, str, str]:
    runs = tmp_path_factory.mktemp("runs")
    ids = []
    for seed, subset in ((0, 64), (1, 256)):
        run = create_run(WEAK.replace(seed=seed, train_subset=subset), runs)
        execute_run(run, tiny_data_dir)
        ids.append(run.id)
    return runs, ids[0], ids[1]


@pytest.fixture
def studio(monkeypatch, tmp_path, tiny_data_dir, two_runs):
    missing = tmp_path / "no-default.pt"  # no shipped model: only the two runs
    monkeypatch.setattr(mnist_core.inference, "DEFAULT_MODEL_PATH", missing)
    monkeypatch.setattr(ui.state, "DEFAULT_MODEL_PATH", missing)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(two_runs[0]))
    return two_runs


def open_link(page: str, **params: str) -> AppTest:
    app = AppTest.from_file(page, default_timeout=60)
    for key, value in params.items():
        app.query_params[key] = value
    app.run()
    assert not app.exception, app.exception
    return app


def test_a_comparison_link_opens_b_against_a_and_it_adds_up(studio):
    runs, a, b = studio
    app = open_link(MISTAKES, run=b, baseline=a)
    expected = compare(runs / a, runs / b)
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["A (baseline)"] == f"{expected.a.accuracy:.2f} %" and metrics["B"] == f"{expected.b.accuracy:.2f} %"
    assert metrics["Fixed by B"] == f"{len(expected.fixed):,}" and metrics["Broken by B"] == f"{len(expected.broken):,}"
    assert app.selectbox(key="mistakes_baseline").value == a
    assert app.query_params == {"run": b, "baseline": a}  # the URL says what is shown


def test_an_image_link_opens_that_image_even_when_the_model_gets_it_right(studio):
    runs, a, b = studio
    result = compare(runs / a, runs / b).b
    right = int(next(i for i in range(len(result.labels)) if result.predictions[i] == result.labels[i]))
    app = open_link(MISTAKES, run=b, image=str(right))
    assert any(f"**Image {right}**" in m.value and "read right" in m.value for m in app.markdown)
    assert app.session_state["selected_model"] == b and app.query_params == {"run": b, "image": str(right)}


def test_a_bad_link_says_what_is_wrong_and_shows_the_page(studio):
    app = open_link(MISTAKES, run="no-such-run", image="12345678", baseline="../etc")
    warnings = " ".join(w.value for w in app.warning)
    assert "'no-such-run' that is not here" in warnings
    assert "'12345678'" in warnings and "numbered 0 to 9,999" in warnings
    assert "baseline '../etc'" in warnings
    assert app.metric  # the page itself still shows the current model
    train = open_link(TRAIN, run="default")
    assert any("The shipped model has no training curves" in w.value for w in train.warning)


def test_a_train_link_opens_that_runs_curves(studio):
    _, a, b = studio
    app = open_link(TRAIN, run=a)
    assert app.session_state["watched_run"] == a  # not the newest, b


def test_an_inside_link_opens_that_test_image_and_the_url_follows(studio):
    _, a, _ = studio
    app = open_link(str(ROOT / "pages" / "inside.py"), image="17", run=a)
    assert app.session_state["inside_index"] == 17 and app.session_state["selected_model"] == a
    assert app.query_params == {"image": "17", "run": a}
    app.number_input(key="inside_index").set_value(23).run()  # the visitor picks another: the URL follows
    assert app.query_params == {"image": "23", "run": a}
    bad = open_link(str(ROOT / "pages" / "inside.py"), image="-4")
    assert any("numbered 0 to" in w.value for w in bad.warning) and not bad.exception
