import numpy as np
import pandas as pd
import pytest

from core.freezing import FreezePlan, Phase
from core.insight import charts


def test_maps_are_coloured_as_rgb_images():
    rgb = charts.colorize(np.array([[0.0, 1.0], [0.5, 2.0]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 3]  # inferno starts black
    assert rgb[0, 1].min() > 150 and rgb[0, 1][0] > 240  # ...and ends pale yellow
    assert np.array_equal(rgb[1, 1], rgb[0, 1])  # values past 1 are clipped
    signed = charts.colorize(np.array([[-1.0, 0.0, 1.0]]), signed=True)
    assert signed[0, 0, 2] > signed[0, 0, 0] and signed[0, 2, 0] > signed[0, 2, 2]  # blue below, red above
    assert signed[0, 1].min() > 230  # zero is near white


def test_overlay_keeps_the_image_where_the_map_is_cold():
    image = np.full((4, 4, 3), 200, dtype=np.uint8)
    values = np.zeros((4, 4))
    values[0, 0] = 1.0
    blended = charts.overlay(image, values, "t").data[0].z
    assert np.array_equal(np.asarray(blended)[1:, 1:], image[1:, 1:])
    assert not np.array_equal(np.asarray(blended)[0, 0], image[0, 0])


def test_the_sanity_threshold_is_labelled_the_way_it_flags():
    fig = charts.similarity_lines(["original", "head"], {"Spearman ρ": [1.0, 0.7]}, "randomised", threshold=0.5)
    label = fig.layout.annotations[0].text
    assert "at or above" in label and "below" not in label


def test_runs_with_the_same_label_get_their_own_colour_and_name():
    table = pd.DataFrame({"run_id": ["20260101-000000-aaaaaa", "20260101-000000-bbbbbb", "20260101-000000-cccccc"],
                          "label": ["Feature extraction", "Feature extraction", "From scratch"],
                          "step": [5, 5, 5], "epoch": [1, 1, 1], "val_loss": [1.0, 0.9, 0.8],
                          "train_loss": [1.1, 1.0, 0.9], "val_acc": [0.5, 0.6, 0.7], "train_acc": [0.4, 0.5, 0.6]})
    fig = charts.curves(table)
    legend = [t for t in fig.data if t.showlegend]
    assert [t.name for t in legend] == ["Feature extraction · aaaaaa", "Feature extraction · bbbbbb", "From scratch"]
    assert len({t.line.color for t in legend}) == 3
    points = charts.scatter(table, "step", "step")
    assert [t.text[0] for t in points.data] == [t.name for t in legend]
    assert [t.marker.color for t in points.data] == [t.line.color for t in legend]  # one colour per run everywhere


def test_a_long_burst_draws_at_most_a_thousand_smoothed_points_per_run_first_and_last_kept():
    rng = np.random.default_rng(0)
    n = 5_000
    steps = pd.DataFrame({"run_id": "20260101-000000-aaaaaa", "label": "Fine-tune", "step": np.arange(1, n + 1),
                          "epoch": np.arange(1, n + 1) / 100, "seconds": np.arange(1, n + 1) / 10,
                          "loss": 2.0 * np.exp(-np.arange(n) / 1000) + rng.normal(0, 0.1, n)})
    epochs = pd.DataFrame(columns=["run_id", "label", "step", "epoch", "seconds"])
    (trace,) = charts.curves(epochs, "step", steps).data
    drawn = pd.Series(trace.y, index=trace.x)
    assert len(drawn) == charts.MAX_STEP_POINTS and drawn.index[0] == 1 and drawn.index[-1] == n
    smoothed = charts.smooth(steps.loss).set_axis(steps.step)  # over every step, then thinned: the same curve
    assert np.allclose(drawn, smoothed.loc[drawn.index])
    gaps = np.diff(drawn.index)
    assert gaps.max() - gaps.min() <= 1  # evenly spread
    (short,) = charts.curves(epochs, "step", steps.head(40)).data
    assert list(short.x) == list(range(1, 41))  # a short run keeps every step


def _two_runs(loss_lo: float, loss_hi: float) -> pd.DataFrame:
    return pd.DataFrame({"run_id": ["20260101-000000-aaaaaa"] * 2 + ["20260101-000000-bbbbbb"] * 2,
                         "label": ["A", "A", "B", "B"], "step": [5, 10, 5, 10], "epoch": [1, 2, 1, 2],
                         "val_loss": [loss_hi, loss_lo, 1.0, 0.5], "train_loss": [loss_hi, 0.3, 0.9, 0.4],
                         "val_acc": [0.5, 1.0, 0.7, 0.8], "train_acc": [0.4, 0.9, 0.6, 0.7]})


def test_log_axes_are_labelled_with_full_values():
    fig = charts.curves(_two_runs(0.15, 2.3))
    assert list(fig.layout.yaxis.ticktext) == ["0.2", "0.5", "1", "2"]  # not Plotly's "2" for 0.2
    assert list(fig.layout.yaxis.tickvals) == pytest.approx([0.2, 0.5, 1.0, 2.0])
    wide = charts.curves(_two_runs(0.004, 30.0))  # four decades: the powers of ten alone
    assert list(wide.layout.yaxis.ticktext) == ["0.01", "0.1", "1", "10"]
    lr = pd.DataFrame({"lr": [1e-5, 1e-3, 1e-1], "loss": [2.0, 1.0, 3.0], "smoothed": [2.0, 1.2, 2.5]})
    assert list(charts.lr_range(lr, 1e-3).layout.xaxis.ticktext) == ["1e-05", "0.0001", "0.001", "0.01", "0.1"]


def test_accuracy_axes_stop_at_one():
    runs = pd.DataFrame({"run_id": ["a", "b"], "label": ["A", "B"], "val_acc": [1.0, 0.6], "seconds": [1.0, 2.0]})
    for axis in (charts.curves(_two_runs(0.15, 2.3)).layout.yaxis2,
                 charts.scatter(runs, "seconds", "training seconds").layout.yaxis):  # a label above 1.0 fits too
        assert list(axis.range) == [0, 1.02] and max(axis.tickvals) == 1


def test_a_scatter_of_many_runs_leaves_names_to_the_legend_instead_of_piling_them_up():
    few = pd.DataFrame({"run_id": list("abc"), "label": list("ABC"), "val_acc": [0.5, 0.6, 0.7],
                        "seconds": [1.0, 2.0, 3.0]})
    many = pd.DataFrame({"run_id": [f"r{i}" for i in range(14)], "label": [f"R{i}" for i in range(14)],
                         "val_acc": [0.5] * 14, "seconds": [1.0] * 14})
    assert all(t.mode == "markers+text" and not t.showlegend for t in charts.scatter(few, "seconds", "s").data)
    assert all(t.mode == "markers" and t.showlegend for t in charts.scatter(many, "seconds", "s").data)


def test_each_kind_of_recipe_has_one_colour_on_every_chart_whatever_the_order():
    from core.freezing import recipes_for
    from core.training.config import RunConfig, recipe_kind

    blocks = ["stem", "layer1", "layer2", "layer3", "layer4"]  # the demo net's
    kinds = {key: recipe_kind(RunConfig.from_recipe(r)) for key, r in recipes_for(blocks).items()}
    assert kinds == {k: k for k in kinds}  # every preset is its own kind
    current = RunConfig.from_recipe(recipes_for(blocks)["fine_tune_top"], label="Current plan")
    assert recipe_kind(current) == "fine_tune_top"  # what it trains, not what it is called
    odd = RunConfig(phases=(Phase(FreezePlan(trainable=("stem", "layer4"))),))
    assert recipe_kind(odd) == "custom"
    start = pd.DataFrame({"run_id": ["a", "b", "c"], "recipe": ["feature_extraction", "fine_tune_top", "from_scratch"]})
    train = start.iloc[::-1]  # another page lists them the other way round
    assert charts.run_colors(start) == charts.run_colors(train)
    assert charts.run_colors(start)["a"] == charts.RECIPE_COLORS["feature_extraction"]
    seeds = pd.DataFrame({"run_id": ["s0", "s1"], "recipe": ["fine_tune_top"] * 2})
    assert len(set(charts.run_colors(seeds).values())) == 2  # two runs of one kind stay apart


def test_long_titles_wrap_instead_of_being_cut_off():
    long = "Fine-tune the top 2 blocks · 8a1f2c minus Feature extraction · 72b3e1"
    fitted = charts.fit_title(long)
    lines = fitted.split("<br>")
    assert len(lines) > 1 and all(len(line) <= charts.TITLE_CHARS for line in lines)
    assert " ".join(lines) == long  # nothing lost
    matrix = np.eye(3, dtype=int)
    fig = charts.confusion_difference(matrix, matrix, ["a", "b", "c"], long)
    assert fig.layout.title.text == fitted and fig.layout.margin.t >= 22 + 18 * len(lines)
    assert charts.fit_title("Feature extraction") == "Feature extraction"  # a short one stays as it is
