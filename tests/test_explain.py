"""What the Explain page computes, as core functions: each run's prediction and map, and a run's maps over
its checkpoints, with one baseline throughout and progress inside each attribution."""

import numpy as np
import pytest
import torch

from core.data.datasets import DataConfig, load_data, mean_colour
from core.insight import analysis
from core.insight import attribution as A
from core.insight import explain as E
from core.models.backbones import ModelConfig
from core.models.network import build_model


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(per_class=10, val_per_class=5))


@pytest.fixture(scope="module")
def models():
    return {"a": build_model(ModelConfig("demo"), 5, seed=0).eval(),
            "b": build_model(ModelConfig("demo", "none"), 5, seed=1).eval()}


def test_each_run_gets_its_prediction_and_map(digits, models):
    image = digits.val_x[3]
    cfg = A.AttributionConfig("integrated_gradients", baseline="mean", steps=16, internal_batch_size=8)
    colour = E.baseline_colour(cfg, digits.train_x)
    assert torch.equal(colour, mean_colour(digits.train_x))
    calls = []
    out = E.explain_runs(models, image, cfg, mean_colour=colour, progress=lambda d, t, w: calls.append((d / t, w)),
                         labels={"a": "pretrained", "b": "scratch"})
    assert list(out) == ["a", "b"]
    for run_id, model in models.items():
        probs = analysis.predict(model, image.unsqueeze(0))[0].numpy()
        assert np.allclose(out[run_id].probabilities, probs) and out[run_id].predicted == int(probs.argmax())
        alone = A.explain(model, E.image_input(image), cfg, mean_colour=colour)
        assert torch.allclose(out[run_id].result.maps, alone.maps)
        assert int(out[run_id].result.target[0]) == out[run_id].predicted  # no target: its own prediction
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 2 * (2 + 2)
    assert "for pretrained" in calls[0][1] and "for scratch" in calls[-1][1]
    assert E.baseline_colour(A.AttributionConfig("grad_cam", baseline="mean"), digits.train_x) is None


def test_map_history_compares_each_step_with_the_last(digits, models):
    image = digits.val_x[0]
    at_step = {10: models["b"], 20: models["a"]}
    history = E.map_history(at_step.__getitem__, [10, 20], image, A.AttributionConfig("saliency"), target=2)
    assert history.steps == [10, 20] and set(history.maps) == {10, 20}
    assert history.spearman[-1] == pytest.approx(1.0) and history.top_k_overlap[-1] == 1.0
    expected = A.similarity(history.maps[10], history.maps[20])
    assert history.spearman[0] == pytest.approx(expected["spearman"])


def test_maps_of_different_classes_are_said_to_answer_different_questions(digits, models):
    cfg = A.AttributionConfig("saliency")
    images = [digits.val_x[i] for i in range(len(digits.val_x))]
    # An image the two runs predict differently (untrained heads disagree on most), explained by each one's
    # own prediction: two questions. One target for both: one question.
    image = next(im for im in images
                 if len({int(analysis.predict(m, im.unsqueeze(0))[0].argmax()) for m in models.values()}) == 2)
    assert E.different_questions(E.explain_runs(models, image, cfg))
    assert not E.different_questions(E.explain_runs(models, image, cfg, target=0))
