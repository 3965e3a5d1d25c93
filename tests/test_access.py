"""Who may do what, decided where runs are made: the training calls take who asks (a `Caller`) and hold a browser
to the operator's bounds and to its own runs; the operator's settings are one value, read once; each browser's
uploads are its own."""

import ast
import dataclasses
import os
from pathlib import Path

import pytest

from conftest import small_run
from core.data.datasets import DataConfig
from core.execution.interface import NotYours
from core.execution.jobs import JobManager
from core.models.backbones import ModelConfig
from core.runtime import paths, settings, shares
from core.runtime.shares import COMMAND_LINE, Caller, NotShared
from core.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]
ALICE, BOB = Caller.browser("alice"), Caller.browser("bob")


def _naming(**parts):
    """A small run whose data or model is `parts`."""
    return dataclasses.replace(small_run("feature_extraction", epochs=1), **parts)


# --- the settings: one value, read once ----------------------------------------------------------------------
def test_the_settings_are_read_once_and_read_again_only_when_reset(tmp_path, monkeypatch):
    first = settings.settings()
    assert first.share == () and paths.home() == first.home
    monkeypatch.setenv(settings.SHARE, str(tmp_path))  # a change in this process's environment, after the read
    assert settings.settings() is first and shares.readable_folders() == (paths.data_dir(),
                                                                          shares.shared_weights_folder())
    settings.reset()
    assert settings.settings().share == (tmp_path,) and tmp_path in shares.readable_folders()


def test_the_settings_travel_to_a_child_process_whole(tmp_path):
    chosen = settings.Settings(home=tmp_path, share=(tmp_path / "a", tmp_path / "b"), export_to=(tmp_path,),
                               tracking_uris=("http://mlflow.lan:5000",), teacher_code="plum-42", max_model_m=20.5,
                               trainer="thread", model_files=f"{tmp_path}/m.py:f")
    assert settings.Settings.from_environ(chosen.to_environ()) == chosen
    assert set(chosen.to_environ()) == set(settings.VARIABLES)
    typo = settings.Settings.from_environ({settings.MAX_MODEL_M: "lots"})
    assert typo.max_model_m is None and settings.Settings.from_environ(typo.to_environ()) == typo


def test_a_test_that_sets_the_settings_leaves_them_to_itself(use_settings):
    use_settings(teacher_code="plum-42", share=(Path("/srv/images"),))
    assert shares.teacher_code_set()


def test_the_next_test_sees_none_of_the_last_ones_settings():
    """The autouse fixture clears every FREEZELAB_* variable and drops the value read: the test above is gone."""
    assert not shares.teacher_code_set() and settings.settings().share == ()
    assert {v for v in os.environ if v.startswith("FREEZELAB_")} <= {"FREEZELAB_HOME", "FREEZELAB_TRAINER",
                                                                      "FREEZELAB_CIFAR_JPG"}


# --- who asks --------------------------------------------------------------------------------------------------
def test_a_caller_is_a_browser_session_or_the_command_line():
    assert ALICE.is_browser and ALICE.owner == "alice" and not COMMAND_LINE.is_browser and COMMAND_LINE.owner == ""
    assert ALICE.may_change("alice") and ALICE.may_change("") and not ALICE.may_change("bob")
    assert COMMAND_LINE.may_change("bob") and not shares.ANY_BROWSER.may_change("bob")
    for bad in ("", "../elsewhere", "a/b", "x" * 65, None):
        with pytest.raises(ValueError, match="A browser session is named by"):
            Caller.browser(bad)


# --- the choke point: runs a browser makes ---------------------------------------------------------------------
def test_a_browser_cannot_make_a_run_naming_what_the_operator_does_not_share(tmp_path, use_settings):
    import torch
    from PIL import Image

    manager = JobManager(RunStore(tmp_path / "store"))
    for kind in ("cats", "dogs"):  # a folder and a weights file a run could really use: only the door refuses
        (tmp_path / "images" / kind).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / kind / "a.png")
    torch.save({"w": torch.zeros(1)}, tmp_path / "net.pt")
    outside = _naming(data=DataConfig(source="folder", path=str(tmp_path / "images")))
    weights = _naming(model=ModelConfig(weights=f"file:{tmp_path}/net.pt"))
    for cfg, says in ((outside, "does not share"), (weights, "does not share")):
        with pytest.raises(NotShared, match=says):
            manager.create_run(cfg, "refused", by=ALICE)
    use_settings(max_model_m=20.0)  # millions: Swin V2-T (28 M) is over
    big = _naming(model=ModelConfig("torchvision:swin_v2_t", "none"), data=DataConfig(image_size=256))
    with pytest.raises(NotShared, match="28 M parameters; this server builds models of up to 20 M"):
        manager.create_run(big, "refused", by=ALICE)
    assert manager.store.runs().empty  # nothing stored
    made = [manager.create_run(cfg, "cli") for cfg in (outside, weights, big)]  # the command line is not bound
    assert manager.store.sessions(made) == dict.fromkeys(made, "")
    use_settings(share=(tmp_path / "images",))  # the operator shares the folder: now a browser may name it
    mine = manager.create_run(outside, "shared", by=ALICE)
    assert manager.store.session(mine) == "alice"


def test_a_browser_changes_only_its_own_runs_and_everyones_at_the_choke_point(tmp_path):
    manager = JobManager(RunStore(tmp_path))
    alices = manager.create_run(small_run("feature_extraction", epochs=1), "g1", by=ALICE)
    everyones = manager.create_run(small_run("feature_extraction", epochs=1), "g2")  # the command line's
    for change in (lambda: manager.start([alices], epochs=1, by=BOB), lambda: manager.stop([alices], by=BOB),
                   lambda: manager.stop_training([alices], by=BOB), lambda: manager.delete(alices, by=BOB),
                   lambda: manager.lengthen([alices], 1, by=BOB)):
        with pytest.raises(NotYours, match=f"Run {alices} belongs to another browser"):
            change()
    assert manager.store.status(alices)[0] == "created"
    manager.start([alices, everyones], epochs=1, by=ALICE)  # alice's own and everyone's
    manager.stop(by=BOB)  # "stop all" from bob stops everyone's run, none of alice's
    manager.wait(120)
    assert manager.store.status(alices)[0] == "finished" and manager.store.status(everyones)[0] == "stopped"
    manager.delete(everyones, by=BOB)
    manager.delete(alices)  # the command line may
    assert manager.store.runs().empty


def test_the_trainer_refuses_a_call_whose_asker_is_not_a_caller(tmp_path):
    """What the trainer can check of who asks: that it is a Caller (the server made it); the JobManager then
    judges it. A plain session name, as the old calls sent, is refused in words."""
    import threading

    from core.execution import trainer_server

    served = trainer_server._Served(JobManager(RunStore(tmp_path)), threading.Event(), key=b"k" * 32)
    with pytest.raises(TypeError, match="says who asks"):
        served.call("delete", ("some-run",), {"by": "alice"})
    with pytest.raises(NotShared):
        served.call("create_run", (_naming(data=DataConfig(source="folder", path="/")),),
                    {"by": ALICE})


# --- uploads apart ---------------------------------------------------------------------------------------------
def test_a_browsers_upload_is_readable_by_it_alone(tmp_path):
    import zipfile

    from PIL import Image

    from core.data import archives

    zipped = tmp_path / "pets.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for name in ("cats", "dogs"):
            for i in range(2):
                image = tmp_path / f"{name}{i}.png"
                Image.new("RGB", (8, 8), (40 * i, 90, 200)).save(image)
                z.write(image, f"{name}/{i}.png")
    folder = archives.extract_upload(zipped.read_bytes(), shares.uploads_folder(ALICE))
    assert shares.check_readable(folder, by=ALICE) == folder.resolve()
    for other in (BOB, shares.ANY_BROWSER):  # another browser, and a link read for any browser
        with pytest.raises(NotShared, match="does not share"):
            shares.check_readable(folder, by=other)
        assert folder not in [f for f in shares.readable_folders(other) if folder.is_relative_to(f)]
    manager = JobManager(RunStore())
    cfg = _naming(data=DataConfig(source="folder", path=str(folder)))
    with pytest.raises(NotShared):
        manager.create_run(cfg, "theirs", by=BOB)
    assert manager.store.session(manager.create_run(cfg, "mine", by=ALICE)) == "alice"
    assert shares.uploads_folder(ALICE) != shares.uploads_folder(BOB)


# --- a new page cannot forget ----------------------------------------------------------------------------------
def test_pages_reach_training_only_through_ui_training_which_says_who_asks():
    """Pages never hold the training interface itself (ui.resources.training): ui/training.py's calls pass this
    browser's Caller, so a page cannot make or change a run as the command line."""
    for page in sorted((ROOT / "app_pages").glob("*.py")):
        held = [n.lineno for n in ast.walk(ast.parse(page.read_text()))
                if isinstance(n, ast.Attribute) and n.attr == "training" and isinstance(n.value, ast.Name)
                and n.value.id == "resources"]
        assert not held, f"{page.name} reaches resources.training() (line {held[0]}): ask ui.training instead"
    changes = {"create_run", "start", "stop", "lengthen", "stop_training", "delete"}
    asked = [n for n in ast.walk(ast.parse((ROOT / "ui" / "training.py").read_text()))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in changes
             and ast.unparse(n.func.value) in ("resources.training()", "m")]
    assert len(asked) >= 5 and all("by" in {k.arg for k in n.keywords} for n in asked), [ast.unparse(n) for n in asked]
