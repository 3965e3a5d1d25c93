import numpy as np
import pytest
import torch

from core.insight import analysis
from core.models.backbones import ModelConfig
from core.models.network import build_model


def test_confusion_matrix_and_per_class_accuracy():
    matrix = analysis.confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    acc = analysis.per_class_accuracy(matrix)
    assert acc[:3].tolist() == [0.5, 1.0, pytest.approx(2 / 3)] and np.isnan(acc[3])


def test_pick_images_by_class_and_outcome():
    y = np.array([0, 0, 1, 1, 2])
    a = np.array([0, 1, 1, 1, 0])
    b = np.array([0, 1, 1, 0, 2])
    assert analysis.pick_images(y, [a, b]).tolist() == [0, 1, 2, 3, 4]
    assert analysis.pick_images(y, [a, b], cls=1).tolist() == [2, 3]
    assert analysis.pick_images(y, [a, b], outcome="correct").tolist() == [0, 2]
    assert analysis.pick_images(y, [a, b], outcome="wrong").tolist() == [1, 3, 4]
    assert analysis.pick_images(y, [a, b], outcome="disagree").tolist() == [3, 4]
    assert analysis.pick_images(y, [a, b], cls=2, outcome="disagree").tolist() == [4]
    with pytest.raises(ValueError, match="Outcome"):
        analysis.pick_images(y, [a], outcome="odd")


def test_predict_gives_probabilities_in_eval_mode():
    model = build_model(ModelConfig("demo", "none"), 3, 28).train()
    x = torch.randint(0, 255, (5, 3, 28, 28), dtype=torch.uint8)
    probs = analysis.predict(model, x, batch_size=2)
    assert probs.shape == (5, 3) and torch.allclose(probs.sum(1), torch.ones(5))
    assert model.training  # left as it was
    model.eval()
    assert torch.allclose(probs, model(x.float() / 255).softmax(1), atol=1e-6)


def test_runs_compare_at_equal_training_time():
    import pandas as pd

    from core.insight.analysis import at_equal_time

    curves = pd.DataFrame({"run_id": ["a", "a", "a", "b", "b"], "label": ["A"] * 3 + ["B"] * 2,
                           "epoch": [1, 2, 3, 1, 2], "seconds": [0.5, 1.0, 1.5, 2.0, 4.0],
                           "val_acc": [0.5, 0.6, 0.7, 0.8, 0.9]})
    table = at_equal_time(curves, 1.2).set_index("run_id")
    assert table.loc["a", "val_acc"] == 0.6 and table.loc["a", "epoch"] == 2  # the fast run, two epochs in
    assert pd.isna(table.loc["b", "val_acc"])  # the slow one had not finished an epoch yet
    assert at_equal_time(curves, 4.0).set_index("run_id").val_acc.to_dict() == {"a": 0.7, "b": 0.9}


def test_equal_time_opens_where_every_run_has_a_point():
    import pandas as pd

    from core.insight.analysis import at_equal_time, every_run_has_a_point

    # A cached frozen run ends at 0.3 s; fine-tuning records its first epoch only at 2.0 s.
    curves = pd.DataFrame({"run_id": ["frozen", "frozen", "tuned", "tuned"], "label": ["F", "F", "T", "T"],
                           "epoch": [1, 2, 1, 2], "seconds": [0.2, 0.3, 2.0, 4.0], "val_acc": [0.7, 0.75, 0.8, 0.9]})
    opened = every_run_has_a_point(curves)
    assert opened == 2.0
    assert at_equal_time(curves, opened).val_acc.notna().all()  # both bars, not one
    assert at_equal_time(curves, curves.groupby("run_id").seconds.max().min()).val_acc.isna().any()  # as before


def test_a_comparison_opens_on_at_most_five_runs_spread_over_a_large_group():
    from core.insight.analysis import default_selection

    sweep = [f"run{i:02d}" for i in range(14)]  # a depth sweep: 7 settings × 2 seeds
    picked = default_selection(sweep, [*sweep, "other"])
    assert len(picked) == 5 and picked[0] == "run00" and picked[-1] == "run13"  # its first and last settings
    assert picked == sorted(picked)  # in the group's order
    assert default_selection(sweep[:3], sweep) == sweep[:3]  # a small group: all of it
    assert default_selection([], ["a", "b"]) == ["a", "b"]  # no group on show: the runs there are


def test_the_results_name_the_winner_with_the_numbers_beside_it():
    import pandas as pd

    from core.insight.analysis import results_in_words

    runs = pd.DataFrame({"label": ["Feature extraction", "Fine-tune the top 2 blocks", "From scratch"],
                         "val_acc": [0.748, 0.896, 0.892], "trainable": [645, 240_000, 308_000],
                         "seconds": [1.2, 3.4, 4.1], "epochs": [6, 6, 6], "status": ["finished"] * 3})
    said = results_in_words(runs)
    assert said.startswith("**Fine-tune the top 2 blocks** leads with 0.896 validation accuracy after 6 epochs, "
                           "training 240,000 parameters in 3.4 s.")
    assert "From scratch: 0.892, level with it (within half a point)" in said
    assert "Feature extraction: 0.748, 14.8 points behind (645 parameters, 1.2 s)." in said
    assert "leads so far" in results_in_words(runs.assign(status=["finished", "paused", "finished"]))


def test_a_sweeps_seeds_average_into_one_line_per_setting():
    import pandas as pd

    from core.insight.analysis import mean_by_setting

    curves = pd.DataFrame({"run_id": ["a0", "a0", "a1", "a1", "b0"], "label": ["A s0", "A s0", "A s1", "A s1", "B"],
                           "recipe": ["fine_tune_top"] * 4 + ["from_scratch"], "step": [5, 10, 5, 10, 5],
                           "epoch": [1, 2, 1, 2, 1], "seconds": [1.0, 2.0, 3.0, 4.0, 1.0],
                           "val_acc": [0.5, 0.7, 0.6, 0.9, 0.3], "val_loss": [1.0, 0.8, 0.9, 0.6, 2.0]})
    setting = {"a0": "3 frozen", "a1": "3 frozen", "b0": "from scratch"}
    mean = mean_by_setting(curves.iloc[:-1].pipe(lambda t: pd.concat([t, curves.iloc[[-1]]])), setting)
    three = mean[mean.run_id == "3 frozen"].set_index("epoch")
    assert three.val_acc.to_dict() == pytest.approx({1: 0.55, 2: 0.8}) and three.label.iloc[0] == "3 frozen (mean of 2)"
    assert mean[mean.run_id == "from scratch"].val_acc.tolist() == [0.3]
    # An epoch only one seed has reached is left out, not averaged over fewer.
    partial = mean_by_setting(curves.drop(index=3), setting)
    assert partial[partial.run_id == "3 frozen"].epoch.tolist() == [1]
