"""The `backbone` embedding: scikit-learn kinds on a pretrained backbone's frozen features, through the run folder
(train, predict, doctor) and its one-line errors. A MobileNetV2 of random weights saved to a file stands in for
ImageNet's (no download here); what is checked is the plumbing, not the features' quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from competition.errors import CompetitionError
from competition.recipe import load_recipe

SIZE = 32


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2 (alpha 0.35) backbone's weights, random, as a Keras weights file."""
    from competition.runtime import import_tensorflow

    import_tensorflow()
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenetv2-035.weights.h5"
    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), alpha=0.35
                                   ).save_weights(path)
    keras.backend.clear_session()
    return path


def _recipe(weights: Path | str, *more: str):
    return load_recipe(None, ["model.kind=logistic", "model.embedding.kind=backbone", "model.embedding.alpha=0.35",
                              f"model.embedding.weights={weights}", f"data.image_size={SIZE}",
                              "model.params.C=0.1", *more])


@pytest.mark.slow
def test_frozen_features_train_predict_and_reuse_the_feature_store(tmp_path: Path, weights_file: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import competition
    from competition.demo import make_demo
    from competition.model import frozen
    from competition.inference import predict_run

    monkeypatch.setenv("COMPETITION_CACHE_DIR", str(tmp_path / "cache"))
    data = make_demo(tmp_path / "d", seed=1, size=SIZE, scale=0.4)
    recipe = _recipe(weights_file)
    assert recipe.resolved()["model"]["embedding"]["backbone"] == "mobilenetv2"
    run_dir = competition.train(recipe, tmp_path / "runs", data_root=data)
    run = competition.Run.load(run_dir)
    assert run.oof.shape == (len(run.y), 4) and np.allclose(run.oof.sum(axis=1), 1, atol=1e-4)
    stored = list((tmp_path / "cache" / "features").glob("*.npy"))
    assert len(stored) == 1  # train and test images through the backbone once, kept

    # predict re-embeds new images through the same backbone and scaler: what submit writes
    calls = []
    real = frozen.backbone_features
    monkeypatch.setattr(frozen, "backbone_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    predicted = predict_run(run_dir.name, [data], tmp_path / "runs")
    order = [predicted.ids.index(i) for i in run.test_ids]
    np.testing.assert_allclose(predicted.proba[order], run.test, atol=1e-4)
    assert calls  # the embedding was computed again from the images, not read from the run


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.kind=logistic", "model.embedding.kind=backbone", "model.embedding.weights=none"],
     "recipe.model.embedding.weights: frozen features of random weights mean nothing"),
    (["model.kind=logistic", "model.embedding.kind=backbone", "model.embedding.backbone=cnn"],
     "frozen features need a pretrained backbone"),
    (["model.kind=logistic", "model.embedding.kind=backbone", "model.embedding.backbone=mobilenetv3"],
     "recipe.model.embedding.backbone"),
    (["model.kind=knn", "model.embedding.alpha=0.35"],
     "recipe.model.embedding.alpha: used only by embedding kind 'backbone', not by 'pca'"),
    (["model.kind=knn", "model.embedding.kind=backbone", "model.embedding.components=20"],
     "recipe.model.embedding.components: used only by embedding kind 'pca'"),
    (["model.kind=knn", "model.embedding.kind=backbone", "model.embedding.alpha=0.3"],
     "recipe.model.embedding.alpha: Keras has ImageNet weights for 'mobilenetv2' only at alpha"),
    (["model.kind=knn", "model.embedding.kind=backbone", "data.image_size=16"],
     "recipe.data.image_size: backbone 'mobilenetv2' needs at least 32 px"),
])
def test_frozen_feature_mistakes_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(CompetitionError) as exc:
        load_recipe(None, overrides)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_pca_and_pixel_recipes_keep_their_hash() -> None:
    recipe = load_recipe(None, ["model.kind=knn"])
    assert recipe.resolved()["model"]["embedding"] == {"kind": "pca", "components": 100}
    assert "components" not in _recipe("x.weights.h5").resolved()["model"]["embedding"]


@pytest.mark.slow
def test_weights_missing_or_misfit_are_refused_before_the_run_folder(tmp_path: Path, weights_file: Path) -> None:
    from competition.demo import make_demo
    from competition.doctor import check_recipes
    from competition.runs.prepare import prepare_run

    data = make_demo(tmp_path / "d", seed=1, size=SIZE, scale=0.4)
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(CompetitionError, match=r"^recipe.model.embedding.weights: weights file .*not found"):
        prepare_run(_recipe(missing), tmp_path / "runs", data_root=data, name="missing")
    with pytest.raises(CompetitionError, match=r"^recipe.model.embedding.weights: .*mobilenetv2"):
        prepare_run(_recipe(weights_file, "model.embedding.alpha=0.5"), tmp_path / "runs", data_root=data,
                    name="misfit")  # a 0.35 file into a 0.5 backbone
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"model:\n  kind: knn\n  embedding: {{kind: backbone, alpha: 0.35, weights: {missing}}}\n"
                           f"data: {{image_size: {SIZE}}}\n")
    checks = {c.item: c for c in check_recipes([recipe_file], data)}
    assert not checks["weights"].ok and checks["weights"].detail.startswith("recipe.model.embedding.weights:")
    recipe_file.write_text(f"model:\n  kind: knn\n  embedding: {{kind: backbone, alpha: 0.35, weights: "
                           f"{weights_file}}}\ndata: {{image_size: {SIZE}}}\n")
    checks = {c.item: c for c in check_recipes([recipe_file], data)}
    assert checks["weights"].ok and "knn on backbone mobilenetv2" in checks["recipe"].detail
