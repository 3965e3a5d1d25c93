"""Weight sources run their real loading code: torchvision from a stand-in file in $TORCH_HOME,
local files through torch.load(weights_only=True), and the zoo."""

import hashlib
import os
from pathlib import Path

import pytest
import torch
import torchvision

from core.models import weights, zoo
from core.models.backbones import ModelConfig
from core.models.network import build_model
from core.models.weights import WeightsMismatch, WeightsUnavailable


def _standin_resnet18(torch_home: Path, monkeypatch) -> dict:
    """A randomly initialised resnet18 state dict, cached where torchvision looks for its ImageNet weights.
    A stand-in cannot match the hash in torchvision's file name, so it is cached under a name carrying its
    own hash, and FreezeLab is pointed there; the hash check and the loading code run as for the real file."""
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    url, file = weights.torchvision_checkpoint("resnet18")
    assert file == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"  # torchvision's exact name
    assert url.endswith("/resnet18-f37072fd.pth")
    file.parent.mkdir(parents=True)
    torch.save(state, file)
    standin = file.with_name(f"resnet18-{hashlib.sha256(file.read_bytes()).hexdigest()[:8]}.pth")
    file.rename(standin)
    monkeypatch.setattr(weights, "torchvision_checkpoint", lambda name: (url, standin))
    return state


def test_torchvision_weights_load_from_the_cache_without_network(isolated_homes, no_network, monkeypatch):
    state = _standin_resnet18(isolated_homes / "torch", monkeypatch)
    net = build_model(ModelConfig("resnet18", weights="pretrained"), num_classes=4, image_size=32)
    assert no_network == []  # nothing was fetched
    assert torch.equal(net.blocks["stem"][0].weight, state["conv1.weight"])
    assert torch.equal(net.blocks["layer3"][1].bn2.running_var, state["layer3.1.bn2.running_var"])
    assert torch.equal(net.blocks["layer4"][0].downsample[0].weight, state["layer4.0.downsample.0.weight"])
    # The ImageNet classifier is not carried over: the head is new and sized for the task.
    assert net.head[-1].out_features == 4
    # The weights bring their normalisation.
    assert torch.allclose(net.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_missing_torchvision_weights_offline_give_a_clear_message(isolated_homes, no_network):
    with pytest.raises(WeightsUnavailable) as err:
        build_model(ModelConfig("mobilenet_v3_small", weights="pretrained"), num_classes=3)
    message = str(err.value)
    expected_file = isolated_homes / "torch" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    assert str(expected_file) in message
    assert "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth" in message
    assert "weights 'none'" in message
    assert len(no_network) == 1  # it did try the network once
    assert not expected_file.exists() and not list(expected_file.parent.glob("*.part"))


@pytest.mark.slow
def test_file_of_another_architecture_names_the_mismatched_layers(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(WeightsMismatch) as err:
        build_model(ModelConfig("resnet18", weights=f"file:{path}"), num_classes=3)
    message = str(err.value)
    assert "do not fit resnet18" in message
    assert "layer1.0.conv1 (file (64, 64, 1, 1), model (64, 64, 3, 3))" in message
    assert "not in the model: layer1.0.conv3" in message

    vgg = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11(weights=None).features.state_dict(), vgg)
    with pytest.raises(WeightsMismatch, match=r"missing from the file: conv1, bn1"):
        build_model(ModelConfig("resnet18", weights=f"file:{vgg}"), num_classes=3)


@pytest.mark.slow
def test_file_in_torchvision_layout_loads_into_the_blocks(tmp_path):
    path = tmp_path / "vgg11.pth"
    state = torchvision.models.vgg11(weights=None).state_dict()  # includes the 1000-way classifier
    torch.save(state, path)
    net = build_model(ModelConfig("vgg11", weights=f"file:{path}"), num_classes=5, image_size=32)
    assert torch.equal(net.blocks["block1"][0].weight, state["features.0.weight"])
    assert torch.equal(net.blocks["block5"][2].bias, state["features.18.bias"])


def test_freezelab_checkpoint_round_trips_and_keeps_its_normalisation(tmp_path):
    source = build_model(ModelConfig("demo", weights="none"), num_classes=5)
    source.mean.fill_(0.25)
    path = tmp_path / "net.pt"
    torch.save({"backbone": "demo", "state_dict": source.state_dict()}, path)
    net = build_model(ModelConfig("demo", weights=f"file:{path}"), num_classes=3)
    for (name, a), b in zip(source.blocks.state_dict().items(), net.blocks.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.allclose(net.mean, torch.full((1, 3, 1, 1), 0.25))
    assert net.head[-1].out_features == 3


def test_a_file_that_holds_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Path("/etc/passwd")}, path)
    with pytest.raises(WeightsMismatch, match="not a weights file FreezeLab can read safely"):
        build_model(ModelConfig("demo", weights=f"file:{path}"), num_classes=3)
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build_model(ModelConfig("demo", weights=f"file:{tmp_path / 'nothing.pt'}"), num_classes=3)
    with pytest.raises(ValueError, match="Weights are 'pretrained'"):
        build_model(ModelConfig("demo", weights="imagenet21k"), num_classes=3)


def test_zoo_entries_load_and_missing_ones_say_how_to_make_them(tmp_path):
    source = build_model(ModelConfig("demo", weights="none"), num_classes=5)
    folder = zoo.save_entry("mine", "demo", source.state_dict(), {"source_accuracy": 0.5})
    assert folder.parent == zoo.roots()[-1]  # the user's zoo: looked up after the bundled entries
    assert {"mine", "demo-digits04"} <= {e["name"] for e in zoo.list_entries()}
    net = build_model(ModelConfig("demo", weights="zoo:mine"), num_classes=2)
    assert torch.equal(net.blocks["layer4"].conv2.weight, source.blocks["layer4"].conv2.weight)
    assert zoo.read_manifest("mine")["source_accuracy"] == 0.5
    with pytest.raises(WeightsUnavailable, match="freezelab pretrain"):
        build_model(ModelConfig("demo", weights="zoo:nope"), num_classes=2)
    with pytest.raises(ValueError, match="plain folder names"):
        zoo.save_entry("../escape", "demo", source.state_dict(), {})


class _RunsCode:
    """Unpickling this runs a shell command: what a planted file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_planted_in_the_torchvision_cache_runs_no_code(isolated_homes, no_network, tmp_path):
    _, file = weights.torchvision_checkpoint("resnet18")
    file.parent.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsCode(marker)}, file)
    with pytest.raises(WeightsUnavailable, match="not the file torchvision publishes") as err:
        build_model(ModelConfig("resnet18", weights="pretrained"), num_classes=3)
    assert "Delete it and load again" in str(err.value) and not marker.exists()
    # Even past the hash check, nothing in the file is executed: it is read with weights_only=True.
    with pytest.raises(WeightsMismatch, match=r"Python objects \(posix.system\)"):
        weights.read_file(file)
    assert not marker.exists() and no_network == []


@pytest.mark.parametrize(("content", "says"), [
    (b"", "it is empty"),
    (b"conv1.weight: 0.1 0.2\n", "it holds text, not tensors"),
    (bytes(range(256)) * 4, "it is not a file PyTorch wrote"),
])
def test_weights_files_that_are_not_weights_say_what_they_are(tmp_path, content, says):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsMismatch, match="not a weights file") as err:
        build_model(ModelConfig("demo", weights=f"file:{path}"), num_classes=3)
    assert says in str(err.value) and str(path) in str(err.value)


def test_a_zoo_name_reaches_nothing_outside_the_zoo_and_never_shadows_a_bundled_entry(tmp_path):
    from core.runtime import paths

    zoo_dir = paths.zoo_dir()
    zoo_dir.mkdir(parents=True, exist_ok=True)
    outside = zoo_dir.parent / "private"  # a folder beside the zoo, with what looks like an entry
    outside.mkdir()
    (outside / zoo.CHECKPOINT).write_bytes(b"x")
    assert zoo.entry_dir("../private") is None and zoo.read_manifest("../private") == {}
    assert zoo.entry_dir("x" * 300) is None
    with pytest.raises(ValueError, match="plain folder names"):
        zoo.save_entry("../private", "demo", {}, {})
    with pytest.raises(ValueError, match="bundled zoo entry's name"):
        zoo.save_entry("demo-digits04", "demo", {}, {})
    mine = zoo_dir / "demo-digits04"  # one made by hand in the user's zoo
    mine.mkdir()
    (mine / zoo.CHECKPOINT).write_bytes(b"not the demo net")
    assert zoo.entry_dir("demo-digits04") == zoo.BUNDLED / "demo-digits04"
    assert [e["folder"] for e in zoo.list_entries() if e["name"] == "demo-digits04"] == [
        str(zoo.BUNDLED / "demo-digits04")]


def test_a_taken_or_too_long_zoo_name_is_refused_and_replace_is_asked_for(capsys):
    from core.__main__ import main
    from core.store.runs import RunStore

    source = build_model(ModelConfig("demo", weights="none"), num_classes=5)
    zoo.save_entry("mine", "demo", source.state_dict(), {"source_accuracy": 0.5})
    with pytest.raises(ValueError, match="already has an entry named 'mine'"):  # another's, or an earlier one
        zoo.save_entry("mine", "demo", source.state_dict(), {"source_accuracy": 0.9})
    assert zoo.read_manifest("mine")["source_accuracy"] == 0.5
    zoo.save_entry("mine", "demo", source.state_dict(), {"source_accuracy": 0.9}, replace=True)
    assert zoo.read_manifest("mine")["source_accuracy"] == 0.9
    for name in ("é" * 200, "x" * 300):  # 400 bytes, 300 characters: no folder can have such a name
        with pytest.raises(ValueError, match="at most 255 bytes"):
            zoo.save_entry(name, "demo", source.state_dict(), {})
    for name in ("mine", "demo-digits04"):  # refused before any training
        assert main(["pretrain", "--epochs", "1", "--name", name]) == 2
        assert "choose another" in capsys.readouterr().err
    assert RunStore().runs().empty


def test_a_zoo_manifest_of_the_wrong_shape_is_listed_as_unreadable_and_gives_no_source_task():
    from core.insight import inside
    from core.training.config import RunConfig

    source = build_model(ModelConfig("demo", weights="none"), num_classes=5)
    for name, manifest in (("listy", {"data": ["digits"], "classes": ["0", "1"]}),
                           ("stringy", {"data": {"task": "source"}, "classes": "01234"}),
                           ("typed", {"data": {"image_size": "big"}, "classes": ["0", "1"]})):
        zoo.save_entry(name, "demo", {f"head.{k}": v for k, v in source.state_dict().items()}, manifest)
        cfg = RunConfig(model=ModelConfig("demo", weights=f"zoo:{name}"))
        assert inside.source_task(cfg) is None
    listed = {e["name"]: e for e in zoo.list_entries()}
    assert "wrong shape" in listed["listy"]["unreadable"] and "wrong shape" in listed["stringy"]["unreadable"]


# --- What an uploaded weights file may cost (issue 45) --------------------------------------------------------------


def _inflating_weights_file(numel: int) -> bytes:
    """A real zip-format .pt of one float tensor of `numel` zeros, whose tensor record is deflated: torch.load
    reads it back whole (the test does not, it is 4 * numel bytes), though the file is small. torch.save writes
    stored records, so a small tensor's file is rewritten: its pickle names `numel` elements, its record is a
    deflated block of zeros of that size."""
    import io
    import struct
    import zipfile

    saved = io.BytesIO()
    torch.save({"w": torch.zeros(12345)}, saved)  # 12345 is pickled as BININT2 "M90", twice: storage and shape
    source = zipfile.ZipFile(saved)
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data.pkl"):
                assert data.count(b"M90") == 2
                archive.writestr(info, data.replace(b"M90", b"J" + struct.pack("<i", numel)))
            elif info.filename.endswith("/data/0"):
                record = zipfile.ZipInfo(info.filename)
                record.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(record, "w", force_zip64=True) as out:
                    zeros = bytes(1 << 20)
                    for _ in range(4 * numel >> 20):
                        out.write(zeros)
            else:
                archive.writestr(info, data)
    return crafted.getvalue()


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_an_upload_that_inflates_past_the_bound_is_refused_before_torch_loads_it(monkeypatch):
    data = _inflating_weights_file(2**26)  # 256 MiB of float32 zeros once read
    assert len(data) < 1 << 20 < weights.MAX_UPLOAD_BYTES  # the file's own size passes the upload's bound
    loaded = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(a) or pytest.fail("torch.load was called"))
    with pytest.raises(WeightsMismatch, match=r"^bomb\.pt would take 256 MB once read, though the file is 0\.\d "
                                              r"MB; a weights file here may hold at most 200 MB of tensors\.$"):
        weights.keep_upload(data, "bomb.pt", fits=lambda source: pytest.fail("fitted before refusing"))
    assert not loaded and not any(weights.uploads_dir().iterdir())  # nothing kept, not even the trial


def test_an_upload_is_read_once_for_its_check_and_its_fit(monkeypatch):
    trained = build_model(ModelConfig("demo", weights="none"), num_classes=5, seed=7)
    import io

    saved = io.BytesIO()
    torch.save(trained.state_dict(), saved)
    reads, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    fitted = []
    kept = weights.keep_upload(saved.getvalue(), "mine.pt", fits=lambda source: fitted.append(
        build_model(ModelConfig("demo", weights=source), num_classes=5)))
    assert len(reads) == 1 and len(fitted) == 1  # the fit check built the model from the state read once
    assert torch.equal(fitted[0].blocks["layer2"].conv1.weight, trained.blocks["layer2"].conv1.weight)
    assert torch.equal(weights.read_file(kept)["blocks.layer2.conv1.weight"], trained.blocks["layer2"].conv1.weight)
    assert len(reads) == 2  # outside the upload's check, a file is read from disk as ever
