"""A browser reaches only what the operator shares: folders it may read (links, the Data page, `file:` weights),
folders it may export into and tracking URIs it may send to. The command line is not bound."""

import dataclasses
import os
import tracemalloc
from pathlib import Path

import pytest
import torch
from PIL import Image

from core import links
from core.__main__ import main
from core.data.datasets import DataConfig
from core.models import weights
from core.runtime import paths, settings, shares
from tests.test_pages import _run


def _class_folder(root):
    """Two classes of two small images each."""
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 90, 200)).save(root / name / f"{i}.png")
    return root


def test_only_shared_folders_are_readable_whatever_the_path_says(tmp_path, use_settings):
    shared = _class_folder(paths.data_dir() / "pets")
    private = _class_folder(tmp_path / "private")
    (shared / "escape").symlink_to(private)  # a link inside a shared folder that points out of it
    assert shares.check_readable(shared) == shared.resolve()
    for path in ("/", "/etc", private, f"{shared}/../../../private", shared / "escape", "~/..", "x" * 5000,
                 "a\0b"):
        with pytest.raises(shares.NotShared, match="freezelab app --share DIR"):
            shares.check_readable(path)
    use_settings(share=(Path("/nowhere"), tmp_path))  # what `--share` gives the server
    assert shares.check_readable(private / "cats") == (private / "cats").resolve()


def test_app_command_passes_its_shares_to_the_server(tmp_path, monkeypatch):
    ran = {}
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: ran.update(argv=argv, env=env))
    monkeypatch.setattr(os, "chdir", lambda where: None)
    monkeypatch.setenv("FREEZELAB_TRAINER", "thread")
    settings.reset()
    assert main(["app", "--share", str(tmp_path), "--export-to", str(tmp_path / "out"),
                 "--tracking-uri", "http://mlflow.lan:5000", "--server.port", "8599"]) == 0
    assert ran["argv"][-2:] == ["--server.port", "8599"]  # streamlit's own flags passed on, ours not
    for variable in (shares.SHARE_ENV, shares.EXPORT_ENV, shares.TRACKING_ENV):  # what the server starts with
        monkeypatch.setenv(variable, ran["env"][variable])
    settings.reset()
    assert shares.check_readable(tmp_path) == tmp_path.resolve()
    shares.check_export(tmp_path / "out" / "tb")
    shares.check_export("http://mlflow.lan:5000/")


def test_a_link_cannot_name_an_unshared_folder_or_weights_file(tmp_path):
    inside = _class_folder(paths.data_dir() / "pets")
    for path in ("/", "/etc", f"{inside}/../../../..", str(tmp_path)):
        opened, problems = links.from_query({"data": "folder", "path": path})
        assert opened.data.path == DataConfig().path
        assert len(problems) == 1 and "does not share" in problems[0], problems
    opened, problems = links.from_query({"data": "folder", "path": str(inside)})
    assert opened.data.path == str(inside) and not problems
    opened, problems = links.from_query({"weights": f"file:{tmp_path}/net.pt"})
    assert opened.model.weights == "pretrained" and "does not share" in problems[0]
    opened, problems = links.from_query({"weights": "file:" + "w" * 5000})
    assert opened.model.weights == "pretrained" and "at most" in problems[0]


def _typed(page: str, choice: tuple[str, str], box: str, text: str):
    """A page where the user picked `choice` (radio key, value) and then typed `text` into text box `box`."""
    at = _run(page)
    at.radio(key=choice[0]).set_value(choice[1])
    _run("", at)
    at.text_input(key=box).input(text)
    return _run("", at)


def test_the_data_page_refuses_an_unshared_folder_before_walking_it(tmp_path):
    private = _class_folder(tmp_path / "private")
    at = _typed("app_pages/data.py", ("data.source", "folder"), "data.path", str(private))
    assert any("does not share" in e.value for e in at.error)
    assert not at.button  # no class list, nothing to load
    shared = _class_folder(paths.data_dir() / "pets")
    at.text_input(key="data.path").input(str(shared))
    _run("", at)
    assert not any("does not share" in e.value for e in at.error)
    assert set(at.multiselect(key="data.classes").options) == {"cats", "dogs"}


def test_the_layers_page_refuses_unshared_weights_files(tmp_path):
    outside = tmp_path / "net.pt"
    torch.save({"w": torch.zeros(1)}, outside)
    at = _typed("app_pages/layers.py", ("layers.weights.demo", "file"), "layers.weights_file", str(outside))
    assert any("does not share" in e.value for e in at.error)
    assert not at.session_state["setup.model"].weights.endswith("net.pt")


def test_runs_a_browser_creates_name_only_shared_places(tmp_path):
    from core.training.config import demo_comparison
    from ui import training

    cfg = demo_comparison(epochs=1)[0]
    outside = dataclasses.replace(cfg, data=DataConfig(source="folder", path=str(tmp_path)))
    with pytest.raises(shares.NotShared):
        training.new_comparison([outside], "refused")


def test_exports_from_a_browser_go_only_where_the_operator_says(tmp_path, use_settings):
    shares.check_export(paths.home() / "mlruns")
    shares.check_export((paths.home() / "mlruns").as_uri())
    for target in (tmp_path, "/etc/cron.d", f"{paths.home()}/../..", "file:///etc", "http://169.254.169.254/",
                   "https://mlflow.example.com"):
        with pytest.raises(shares.NotShared):
            shares.check_export(target)
    use_settings(tracking_uris=("https://mlflow.example.com",), export_to=(tmp_path,))
    shares.check_export("https://mlflow.example.com/")
    shares.check_export(tmp_path / "tb")


def test_a_huge_file_that_is_not_weights_is_described_from_its_head(tmp_path):
    big = tmp_path / "movie.txt"
    with open(big, "wb") as f:
        f.write(b"just some text at the start\n")
        f.truncate(1 << 30)  # 1 GiB, sparse: reading it whole would hold a gigabyte
    tracemalloc.start()
    try:
        with pytest.raises(weights.WeightsMismatch, match="it holds text, not tensors"):
            weights.read_file(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB held to describe a file"


def test_a_browser_builds_a_library_model_only_up_to_the_size_the_operator_allows(use_settings):
    """Counted before anything is built: a link or the Layers page naming a model over the limit builds nothing."""
    use_settings(max_model_m=20.0)  # millions: Swin V2-T (28 M) is over, ShuffleNet (1.4 M) under
    opened, problems = links.from_query({"backbone": "torchvision:swin_v2_t"})
    assert opened.model.backbone == "demo"
    assert "torchvision:swin_v2_t has 28 M parameters; this server builds models of up to 20 M" in problems[0]
    assert links.from_query({"backbone": "torchvision:shufflenet_v2_x0_5"})[0].model.backbone.endswith("x0_5")
    links.check_browser_may_build("resnet50")  # a registered backbone (25.6 M): the operator's registry
    with pytest.raises(shares.NotShared, match="633 M parameters"):  # the default: 100 M; ViT-H/14 counted unbuilt
        use_settings(max_model_m=shares.DEFAULT_MAX_MODEL_M)
        links.check_browser_may_build("torchvision:vit_h_14")
    use_settings(max_model_m=None)  # the variable held no number ("lots")
    with pytest.raises(shares.NotShared, match="not a number of millions"):
        links.check_browser_may_build("torchvision:shufflenet_v2_x0_5")

    use_settings(max_model_m=20.0)
    at = _run("app_pages/layers.py")
    at.toggle(key="layers.more").set_value(True).run()
    at.selectbox(key="layers.backbone").set_value("torchvision:swin_v2_t").run()
    assert not at.exception and "can raise that with `freezelab app --max-model-size" in at.error[0].value
    assert at.session_state["setup.model"].backbone == "demo"


def test_app_command_sets_the_model_size_limit_and_refuses_a_bad_one(monkeypatch, capsys):
    ran = {}
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: ran.update(env=env))
    monkeypatch.setattr(os, "chdir", lambda where: None)
    monkeypatch.setenv("FREEZELAB_TRAINER", "thread")
    monkeypatch.delenv(shares.MAX_MODEL_ENV, raising=False)
    settings.reset()
    assert main(["app", "--max-model-size", "700"]) == 0
    monkeypatch.setenv(shares.MAX_MODEL_ENV, ran["env"][shares.MAX_MODEL_ENV])  # what the server starts with
    settings.reset()
    assert shares.max_model_params() == 700_000_000
    with pytest.raises(SystemExit):
        main(["app", "--max-model-size", "0"])
    assert "give a positive number, not '0'" in capsys.readouterr().err
