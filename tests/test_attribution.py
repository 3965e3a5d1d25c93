"""Attributions with known answers: a linear model's saliency is its weights; a model trained on
images whose class is a coloured patch looks at the patch; randomising the model changes its maps."""

import numpy as np
import pytest
import torch
from torch import nn

from core.data.datasets import DataConfig, ImageData
from core.freezing import FreezePlan, Phase
from core.insight import attribution as A
from core.models.backbones import ModelConfig, block_names
from core.models.network import build_model
from core.training.config import OptimConfig, RunConfig
from core.training.events import EpochEnd
from core.training.loop import run_burst, start_run

SIZE, PATCH = 48, 20
COLOURS = torch.tensor([[220, 30, 30], [30, 200, 30], [30, 30, 220]], dtype=torch.float32)


def coloured_patches(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dark noisy images with one bright square whose colour is the class; also the squares' masks."""
    g = torch.Generator().manual_seed(seed)
    xs, ys, masks = [], [], []
    for label, colour in enumerate(COLOURS):
        for _ in range(per_class):
            img = 30 * torch.rand(3, SIZE, SIZE, generator=g)
            r, c = torch.randint(0, SIZE - PATCH + 1, (2,), generator=g).tolist()
            img[:, r : r + PATCH, c : c + PATCH] = colour.view(3, 1, 1) + 10 * torch.randn(3, PATCH, PATCH, generator=g)
            mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
            mask[r : r + PATCH, c : c + PATCH] = True
            xs.append(img.clamp(0, 255).to(torch.uint8))
            ys.append(label)
            masks.append(mask)
    return torch.stack(xs), torch.tensor(ys), torch.stack(masks)


@pytest.fixture(scope="module")
def patch_model():
    """The demo architecture trained from scratch on the patch images (through the real training loop)."""
    cfg_data = DataConfig(source="folder", path="synthetic: coloured patches", image_size=SIZE, per_class=None)
    tx, ty, _ = coloured_patches(60, seed=0)
    vx, vy, masks = coloured_patches(8, seed=1)
    data = ImageData(["red", "green", "blue"], tx, ty, vx, vy, cfg_data)
    cfg = RunConfig(data=cfg_data, model=ModelConfig("demo", "none"),
                    phases=(Phase(FreezePlan.unfreeze(block_names("demo"))),),
                    optim=OptimConfig(lr=3e-3, batch_size=30), epochs=4)
    state = start_run(cfg, data)
    epochs = [e for e in run_burst(state, epochs=4) if isinstance(e, EpochEnd)]
    assert epochs[-1].val_acc == 1.0  # it has learned the task
    return state.model.eval(), vx.float() / 255, vy, masks


def test_saliency_of_a_linear_model_is_its_absolute_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.rand(2, 3, 6, 6)
    result = A.get_method("saliency")(model).attribute(x, target=2)
    expected = model[1].weight[2].abs().view(3, 6, 6).sum(0)  # |dy/dx| per channel, summed over channels
    assert torch.allclose(result.maps[0], expected.detach(), atol=1e-6)
    assert torch.allclose(result.maps[1], expected.detach(), atol=1e-6)  # the same for every input
    assert result.target.tolist() == [2, 2]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grad_cam", "integrated_gradients"])
def test_a_trained_model_attributes_most_mass_to_the_patch(patch_model, method):
    model, x, y, masks = patch_model
    result = A.explain(model, x, A.AttributionConfig(method=method), target=y)
    mass = [A.mass_inside(result.maps[i].numpy(), masks[i].numpy()) for i in range(len(x))]
    area = masks[0].float().mean().item()  # 17% of the image
    assert np.mean(mass) > 0.5, (method, mass)
    assert min(mass) > 2 * area, (method, mass)
    peak_inside = [bool(masks[i].flatten()[result.maps[i].flatten().argmax()]) for i in range(len(x))]
    assert sum(peak_inside) >= 0.9 * len(x)
    if method == "integrated_gradients":
        assert result.delta is not None and result.delta.shape == (len(x),)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_randomising_the_model_lowers_map_similarity(patch_model):
    model, x, _, _ = patch_model
    for method in ("grad_cam", "integrated_gradients"):
        check = A.sanity_check(model, x[:1], A.AttributionConfig(method=method))
        assert check.stages[0] == "original" and check.stages[1] == "head"
        assert check.stages[-1] == "head + layer4 + layer3 + layer2 + layer1 + stem"
        assert check.spearman[0] == 1.0
        assert check.spearman[-1] < A.DEPENDENCE_THRESHOLD and check.depends_on_model, check.table()
    # The original model is untouched: the check works on a copy.
    assert model(x[:1]).argmax(1).item() == 0


@pytest.mark.parametrize("method", list(A.METHODS))
def test_every_method_gives_maps_of_the_image_size(method):
    torch.manual_seed(0)
    model = build_model(ModelConfig("demo", "none"), 3, 28)
    x = torch.rand(2, 3, 28, 28)
    cfg = A.AttributionConfig(method=method, steps=8, samples=4, window=7, stride=7)
    result = A.explain(model, x, cfg)
    assert result.maps.shape == (2, 28, 28) and torch.isfinite(result.maps).all()
    assert result.target.tolist() == model.eval()(x).argmax(1).tolist()  # None: the predicted class
    heat = A.normalize(result.maps[0])
    assert heat.shape == (28, 28) and heat.min() >= 0 and heat.max() <= 1
    assert model.blocks["stem"][2].inplace  # the caller's model is left as it was


def test_normalisation_handles_sign_and_outliers():
    a = np.array([[0.0, 1.0], [-2.0, 100.0]])
    assert np.allclose(A.normalize(a, "absolute", outlier_perc=0), np.abs(a) / 100)
    clipped = A.normalize(a, "absolute", outlier_perc=30)  # the 70th percentile (1.6) maps to 1
    assert clipped.max() == 1.0 and clipped[0, 1] == pytest.approx(1 / np.percentile([0, 1, 2, 100], 70))
    assert np.allclose(A.normalize(a, "positive", 0), np.clip(a, 0, None) / 100)
    assert np.allclose(A.normalize(a, "negative", 0), [[0, 0], [1, 0]])
    signed = A.normalize(a, "all", 0)
    assert signed.min() == pytest.approx(-0.02) and signed.max() == 1.0
    assert np.array_equal(A.normalize(np.zeros((3, 3))), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="Sign"):
        A.normalize(a, "both")


def test_map_comparisons():
    rng = np.random.default_rng(0)
    a = rng.random((10, 10))
    assert A.rank_correlation(a, a * 3) == pytest.approx(1.0)
    assert A.rank_correlation(a, -a) == pytest.approx(1.0)  # absolute values are compared
    assert A.rank_correlation(a, 1 / (a + 0.1)) == pytest.approx(-1.0)
    assert A.top_k_overlap(a, a, 0.1) == 1.0
    b = a.copy()
    b[a >= np.quantile(a, 0.9)] = 0  # b's top pixels are anything but a's
    assert A.top_k_overlap(a, b, 0.1) == 0.0
    assert np.allclose(A.difference(a, a), 0)
    assert np.isnan(A.rank_correlation(np.zeros(4), a[:2, :2]))
    with pytest.raises(ValueError, match="Unknown attribution method"):
        A.get_method("lime")
    with pytest.raises(ValueError, match="Baseline"):
        A.baseline_for(torch.zeros(1, 3, 4, 4), "white")


def test_baselines():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(A.baseline_for(x, "black"), torch.zeros_like(x))
    blurred = A.baseline_for(x, "blur")
    assert blurred.shape == x.shape and blurred.std() < x.std()
    mean = A.baseline_for(x, "mean", torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(mean[1, :, 5, 5], torch.tensor([0.1, 0.2, 0.3]))


def test_the_sanity_check_runs_the_model_on_its_own_device():
    """The page passes images on the CPU whatever device the model is on. On the "meta" device (no
    values, no GPU needed) the check cannot finish, but its first forward pass must see the input there."""
    model = build_model(ModelConfig("demo", "none"), 3, 28).to("meta")
    seen: list[str] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].device.type))  # copies keep the hook
    with pytest.raises((RuntimeError, NotImplementedError)):  # reading a prediction off meta tensors fails
        A.sanity_check(model, torch.rand(1, 3, 28, 28), A.AttributionConfig("saliency"))
    assert seen == ["meta"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
@pytest.mark.parametrize("method", list(A.METHODS))
def test_maps_and_the_sanity_check_on_a_gpu_model_with_cpu_images(method):
    model = build_model(ModelConfig("demo", "none"), 3, 28).cuda()
    x = torch.rand(1, 3, 28, 28)  # on the CPU, as the page passes it
    cfg = A.AttributionConfig(method, steps=8, samples=4, window=7, stride=7)
    assert A.explain(model, x, cfg).maps.device.type == "cpu"
    check = A.sanity_check(model, x, cfg)
    assert len(check.spearman) == 1 + len(model.blocks) + 1


def test_the_sanity_check_starts_from_the_map_shown_with_the_datasets_mean_baseline(patch_model):
    model, x, _, _ = patch_model
    cfg = A.AttributionConfig("integrated_gradients", baseline="mean", steps=16)
    mean = torch.tensor([0.9, 0.1, 0.5])  # far from the image's own mean, so the two baselines differ
    shown = A.explain(model, x[:1], cfg, mean_colour=mean).maps[0].numpy()
    check = A.sanity_check(model, x[:1], cfg, mean_colour=mean)
    assert np.allclose(check.original, shown, atol=1e-6)
    own_mean = A.explain(model, x[:1], cfg, mean_colour=x[0].mean(dim=(1, 2))).maps[0].numpy()
    assert not np.allclose(check.original, own_mean, atol=1e-4)
    with pytest.raises(ValueError, match="mean colour"):  # never a silent fall-back to another baseline
        A.explain(model, x[:1], cfg)


@pytest.mark.parametrize(("method", "settings"), [
    ("occlusion", {"window": 4, "stride": 2}),
    ("integrated_gradients", {"steps": 64, "internal_batch_size": 16}),
    ("smoothgrad", {"samples": 96}),
])
def test_slow_methods_report_progress_while_they_run(method, settings):
    model = build_model(ModelConfig("demo", "none"), 3, 28)
    x = torch.rand(1, 3, 28, 28)
    cfg = A.AttributionConfig(method, **settings)
    calls: list[tuple[int, int]] = []
    A.explain(model, x, cfg, progress=lambda done, total, what: calls.append((done, total)))
    totals = {t for _, t in calls}
    assert len(totals) == 1 and totals.pop() == A.get_method(method)(model, cfg).forward_passes(x) >= 3
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1))  # one report per forward pass, in order
    assert calls[-1][0] == calls[-1][1]  # the count was exact: the last pass completes it


def test_smoothgrad_gives_the_same_map_twice():
    model = build_model(ModelConfig("demo", "none"), 3, 28)
    x = torch.rand(1, 3, 28, 28)
    cfg = A.AttributionConfig("smoothgrad", samples=8)
    assert torch.equal(A.explain(model, x, cfg).maps, A.explain(model, x, cfg).maps)


def test_the_sanity_verdict_reads_every_stage_not_the_last_alone():
    stages = ["original", "head", "head + layer4", "head + layer4 + layer3"]
    # Grad-CAM as seen on the demo: far from the original once the head is random, similar again at the end.
    depends, words = A.sanity_verdict(stages, [1.0, -0.2, 0.3, 0.6], images=3)
    assert depends and "once head is randomised" in words and "ρ -0.20" in words
    assert "similar again (ρ 0.60)" in words and "median over 3 images" in words
    depends, words = A.sanity_verdict(stages, [1.0, 0.9, 0.7, 0.55])
    assert not depends and "never falls below 0.5" in words and "lowest 0.55" in words
    assert A.sanity_verdict(stages, [1.0, float("nan"), 0.9, 0.9])[0]  # a flat map is as unlike as can be


def test_the_sanity_check_takes_the_median_over_several_images(patch_model):
    model, x, _, _ = patch_model
    cfg = A.AttributionConfig("saliency")
    several = A.sanity_check(model, x[:3], cfg)
    singles = [A.sanity_check(model, x[i : i + 1], cfg) for i in range(3)]
    assert several.images == 3 and several.stages == singles[0].stages
    for stage in range(1, len(several.stages)):
        assert several.spearman[stage] == pytest.approx(float(np.median([s.spearman[stage] for s in singles])))
    assert several.verdict == A.sanity_verdict(several.stages, several.spearman, 3)[1]


def test_grad_cam_on_a_layer_too_small_to_resolve_anything_is_said_and_an_earlier_block_offered():
    model = build_model(ModelConfig("resnet18", "none"), 10, 32)
    sizes = A.block_resolutions(model)
    assert sizes["layer4"] == (1, 1) and sizes["layer3"] == (2, 2) and sizes["layer2"] == (4, 4)
    warning = A.small_layer(sizes, None)  # the default: the last block
    assert "layer4 outputs 1×1 cells" in warning and "e.g. layer2 (4×4)" in warning
    assert A.small_layer(sizes, "layer2") == ""
    assert A.small_layer(A.block_resolutions(build_model(ModelConfig("resnet18", "none"), 10, 224)), None) == ""
    x = torch.rand(1, 3, 32, 32)
    earlier = A.explain(model, x, A.AttributionConfig("grad_cam", layer="layer2")).maps[0]
    last = A.explain(model, x, A.AttributionConfig("grad_cam")).maps[0]
    assert earlier.shape == last.shape == (32, 32)
    assert len(torch.unique(earlier)) > len(torch.unique(last))  # more to tell apart than a stretched 1×1
