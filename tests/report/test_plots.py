import numpy as np
import pandas as pd
import pytest
from PIL import Image

import competition.report.plots
from competition.errors import CompetitionError
from competition.metrics import macro_f1, score
from competition.report.plots import most_confident_wrong, write_report, wrong_section
from competition.runs.fold_files import read_histories
from competition.runs import Run, save_run

CLASSES = ["normal", "mild <b>&", "severe"]  # markup in a name: the page must escape it
N, K, FOLDS = 30, 3, 3


def _fake_run(tmp_path, kind="model", with_images=True, with_history=True):
    rng = np.random.default_rng(0)
    y = np.arange(N) % K
    logits = rng.normal(0, 1.0, (N, K)) + 1.2 * np.eye(K)[y]
    oof = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    paths = None
    if with_images:
        image_dir = tmp_path / "images"
        image_dir.mkdir()
        paths = []
        for i in range(N):
            file = image_dir / f"img{i}.png"
            Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8), mode="L").save(file)
            paths.append(str(file))
        paths = np.array(paths)
    run_dir = tmp_path / "runs" / f"r-{kind}"
    save_run(run_dir, name=f"r-{kind}", kind=kind, classes=CLASSES, ids=np.array([f"id{i}" for i in range(N)]),
             y=y, folds=np.arange(N) % FOLDS, oof=oof, test=oof[:5], test_ids=np.array(["t0", "t1", "t2", "t3", "t4"]),
             scheme="stratified 3-fold, seed 42", paths=paths,
             extra={"members": ["a", "b"]} if kind == "ensemble" else None)
    (run_dir / "recipe.yaml").write_text("name: demo\ntrain:\n  note: <script>x</script>\n", encoding="utf-8")
    if with_history and kind == "model":
        for k in range(FOLDS):
            epochs = np.arange(1, 7)
            frame = pd.DataFrame({
                "phase": (epochs > 3).astype(int), "epoch": epochs, "loss": 1.0 / epochs,
                "accuracy": 1 - 0.5 / epochs, "val_loss": 0.8 + 0.02 * (epochs - 3) ** 2,
                "val_macro_f1": 0.5 + 0.1 * k - 0.01 * (epochs - 3 - k) ** 2, "seconds": 1.5,
            })
            (run_dir / f"fold_{k}").mkdir()
            frame.to_csv(run_dir / f"fold_{k}" / "history.csv", index=False)
    return run_dir


def _png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        return image.size


@pytest.fixture
def low_dpi(monkeypatch):
    """Tests that only check what the page says render small PNGs (rendering dominates test time)."""
    monkeypatch.setattr(competition.report.plots, "PNG_DPI", 30)


def test_model_report(tmp_path):
    run_dir = _fake_run(tmp_path)
    page = write_report(run_dir, n_wrong=4)
    assert page == run_dir / "report" / "index.html"
    text = page.read_text(encoding="utf-8")
    for name in ("curves.png", "confusion.png", "per_class.png", "wrong.png"):
        width, height = _png_size(page.parent / name)
        assert 250 <= width <= 2500 and 250 <= height <= 2500, (name, width, height)
        assert f'src="{name}"' in text
    run = Run.load(run_dir)
    assert f"{score(run.y, run.oof, CLASSES)['macro_f1']:.4f}" in text
    assert "stratified 3-fold, seed 42" in text
    assert "mild &lt;b&gt;&amp;" in text and "<b>&" not in text  # escaped class name
    assert "&lt;script&gt;" in text and "<script>" not in text  # recipe shown escaped in <pre>
    assert "<pre>" in text
    assert not list(page.parent.glob(".*.tmp"))  # atomic writes left no temp files


def test_ensemble_report_without_curves_or_images(tmp_path, low_dpi):
    run_dir = _fake_run(tmp_path, kind="ensemble", with_images=False)
    stale = run_dir / "out"
    stale.mkdir()
    (stale / "curves.png").write_bytes(b"old")  # an earlier report's plot must not linger
    page = write_report(run_dir, out_dir=stale)
    text = page.read_text(encoding="utf-8")
    assert page == stale / "index.html"
    assert not (stale / "curves.png").exists() and "curves.png" not in text
    assert "no training curves" in text
    assert not (stale / "wrong.png").exists() and "wrong-image grid skipped" in text
    for name in ("confusion.png", "per_class.png"):
        _png_size(stale / name)
        assert f'src="{name}"' in text


def test_missing_images_and_histories_are_noted(tmp_path):
    run_dir = _fake_run(tmp_path, with_history=False)
    for file in (tmp_path / "images").iterdir():
        file.unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "wrong.png").write_bytes(b"old")
    section = wrong_section(Run.load(run_dir), out, n_wrong=4)
    assert section.image is None and not (out / "wrong.png").exists()
    assert any("exist on disk" in note for note in section.notes)
    assert read_histories(run_dir) == {}


def test_most_confident_wrong_order(tmp_path):
    run = Run.load(_fake_run(tmp_path, with_images=False, with_history=False))
    rows = most_confident_wrong(run, 5)
    pred = run.oof.argmax(axis=1)
    assert np.all(pred[rows] != run.y[rows])
    confidence = run.oof[rows, pred[rows]]
    assert np.all(np.diff(confidence) <= 0)


def test_missing_run_folder(tmp_path):
    with pytest.raises(CompetitionError, match="nope"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompetitionError, match="empty"):
        write_report(tmp_path / "empty")


def test_ensemble_page_shows_members_weights_nested_and_in_sample_and_titles_name_the_run(tmp_path, low_dpi,
                                                                                           monkeypatch):
    from competition.ensemble import build_ensemble

    rng = np.random.default_rng(4)
    y = np.arange(N) % K
    members = []
    for name, strength in (("strong", 2.5), ("weak", 0.3)):
        oof = np.exp(rng.normal(0, 1, (N, K)) + strength * np.eye(K)[y])
        oof /= oof.sum(axis=1, keepdims=True)
        members.append(Run.load(save_run(tmp_path / "runs" / name, name=name, kind="model", classes=CLASSES,
                                         ids=np.array([f"id{i}" for i in range(N)]), y=y, folds=np.arange(N) % FOLDS,
                                         oof=oof, test=oof[:5], test_ids=np.array([f"t{i}" for i in range(5)]))))
    run_dir = build_ensemble(members, "caruana", "blend", tmp_path / "runs")
    titles = []

    def record(fig, path):
        titles.append((path.name, [t.get_text() for t in fig.texts] + [ax.get_title() for ax in fig.axes]))

    monkeypatch.setattr(competition.report.plots, "save_figure", record)
    text = write_report(run_dir, n_wrong=0).read_text(encoding="utf-8")
    meta = Run.load(run_dir).meta
    scores = {m.name: macro_f1(m.y, m.oof) for m in members}
    assert "Ensemble and its members" in text and "<td>caruana</td>" in text
    for name, weight in zip(meta["members"], meta["weights"]):
        assert f"<td>{name}</td><td>{weight:.3f}</td><td>{scores[name]:.4f}</td>" in text
    assert f"{meta['in_sample_macro_f1']:.4f}" in text and f"{meta['oof_macro_f1']:.4f}" in text
    gap = meta["oof_macro_f1"] - max(scores.values())
    assert f"<td>{gap:+.4f}" in text
    drawn = dict(titles)
    assert set(drawn) == {"confusion.png", "per_class.png", "members.png"}
    assert all(any(t.startswith("blend: ") for t in texts) for texts in drawn.values()), drawn
    assert 'src="members.png"' in text


def test_every_png_title_of_a_model_report_names_the_run(tmp_path, monkeypatch):
    run_dir = _fake_run(tmp_path)
    titles = {}
    monkeypatch.setattr(competition.report.plots, "save_figure", lambda fig, path: titles.update(
        {path.name: [t.get_text() for t in fig.texts] + [ax.get_title() for ax in fig.axes]}))
    write_report(run_dir, n_wrong=4)
    assert {"curves.png", "confusion.png", "per_class.png", "wrong.png"} <= set(titles)
    assert all(any(t.startswith("r-model: ") for t in texts) for texts in titles.values()), titles
