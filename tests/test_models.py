"""PoseNet, its backbones and the normalising activation."""

from __future__ import annotations

import pytest
import torch

from cubepose.config import validate_config
from cubepose.errors import ConfigError, CubeposeError
from cubepose.models import PoseNet, normalize_quaternions
from cubepose.models.backbones import vgg16
from cubepose.models.export_spec import export_spec_of


def test_normalisation_gives_unit_quaternions_and_is_safe_for_zero():
    q = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 4.0]], requires_grad=True)
    out = normalize_quaternions(q)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.6, 0.0, 0.8]]))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("backbone", ["small_cnn", "small_cnn_hires", "vgg16", "resnet18", "resnet34"])
@pytest.mark.parametrize("head", ["unity_mlp", "pooled"])
def test_pose_net_outputs(backbone, head):
    model = PoseNet(validate_config({"network": {"backbone": backbone, "head": head, "image_size": 64}}))
    out = model(torch.randn(3, 3, 64, 64))
    assert out["translation"].shape == (3, 3)
    torch.testing.assert_close(out["quaternion"].norm(dim=1), torch.ones(3))


def test_resnet_layouts_match_the_papers_parameter_counts():
    from cubepose.models.backbones import resnet18, resnet34

    # torchvision's resnet18 / resnet34 have 11,689,512 / 21,797,672 parameters, of which fc has 513,000
    assert sum(p.numel() for p in resnet18().parameters()) == 11_689_512 - 513_000
    assert sum(p.numel() for p in resnet34().parameters()) == 21_797_672 - 513_000


def test_resnet_loads_a_torchvision_style_file_without_its_classifier(tmp_path):
    from cubepose.models.backbones import resnet18

    reference = resnet18()
    for p in reference.parameters():
        torch.nn.init.constant_(p, 0.25)
    state = dict(reference.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet18.pth")
    network = {"backbone": "resnet18", "image_size": 64, "pretrained": str(tmp_path / "resnet18.pth")}
    model = PoseNet(validate_config({"network": network}))
    assert all(torch.all(p == 0.25) for p in model.backbone.parameters())
    network["backbone"] = "resnet34"
    with pytest.raises(ConfigError, match="does not fit backbone 'resnet34'"):
        PoseNet(validate_config({"network": network}))


def test_6d_rotation_gives_canonical_unit_quaternions_with_finite_gradients():
    model = PoseNet(validate_config({"network": {"backbone": "small_cnn", "image_size": 32, "rotation": "6d"}}))
    assert model.head.branches["quaternion"][-1].out_features == 6  # the head regresses 6 numbers
    q = model(torch.randn(4, 3, 32, 32))["quaternion"]
    torch.testing.assert_close(q.norm(dim=1), torch.ones(4))
    assert torch.all(q[:, 3] >= 0)
    q.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_6d_of_a_known_rotation_is_its_quaternion():
    from cubepose.models.rotations import six_d_to_quaternion

    # 90 deg about z: x -> y, y -> -x; its first two matrix columns, unnormalised and not orthogonal
    first, second = torch.tensor([0.0, 2.0, 0.0]), torch.tensor([-1.0, 0.5, 0.0])
    q = six_d_to_quaternion(torch.cat([first, second])[None])
    half = 0.5**0.5
    torch.testing.assert_close(q, torch.tensor([[0.0, 0.0, half, half]]))
    # a column pair whose quaternion has w < 0 comes back with the data's sign, w >= 0
    flipped = six_d_to_quaternion(torch.tensor([[-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]]))  # 180 deg about z
    torch.testing.assert_close(flipped.abs(), torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    assert flipped[0, 3] >= 0


def test_unknown_rotation_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"network/rotation: unknown rotation 'euler'; known: 6d, quaternion"):
        validate_config({"network": {"rotation": "euler"}})


def test_unknown_head_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"network/head: unknown head 'mlp'; known: pooled, unity_mlp"):
        validate_config({"network": {"head": "mlp"}})


def test_a_symmetric_object_still_predicts_its_orientation():
    config = {"network": {"backbone": "small_cnn", "image_size": 32}, "object": {"symmetries": "cube"}}
    outputs = PoseNet(validate_config(config)).eval()(torch.randn(2, 3, 32, 32))
    assert set(outputs) == {"translation", "quaternion"} and outputs["quaternion"].shape == (2, 4)


def test_same_seed_same_initial_weights():
    config = {"network": {"backbone": "small_cnn", "image_size": 32}, "seed": 7}
    a, b = PoseNet(validate_config(dict(config))), PoseNet(validate_config(dict(config)))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


def test_vgg16_loads_torchvision_style_weights_from_a_local_file(tmp_path):
    reference = vgg16()
    for p in reference.parameters():
        torch.nn.init.constant_(p, 0.5)
    state = {f"features.{k}": v for k, v in reference.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file also has the classifier
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    model = PoseNet(validate_config({"network": {"backbone": "vgg16", "image_size": 32, "pretrained": str(path)}}))
    assert all(torch.all(p == 0.5) for p in model.backbone.parameters())


def test_pretrained_file_that_does_not_fit_names_the_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    config = validate_config({"network": {"backbone": "small_cnn", "image_size": 32, "pretrained": str(path)}})
    with pytest.raises(ConfigError, match=f"network/pretrained: {path} does not fit backbone 'small_cnn'"):
        PoseNet(config)
    config["network"]["pretrained"] = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="network/pretrained: no file at"):
        PoseNet(config)


def test_a_registered_backbone_is_usable_by_name(monkeypatch):
    from cubepose.models import BACKBONES

    monkeypatch.setattr(BACKBONES, "_items", dict(BACKBONES._items))  # registered for this test only

    @BACKBONES.register("tiny")
    def tiny() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=4), torch.nn.ReLU())

    model = PoseNet(validate_config({"network": {"backbone": "tiny", "head": "pooled", "image_size": 32}}))
    assert model(torch.randn(2, 3, 32, 32))["translation"].shape == (2, 3)
    with pytest.raises(ValueError, match="backbone 'tiny' is registered twice"):
        BACKBONES.register("tiny")(tiny)


def test_export_asks_a_network_only_its_export_spec_and_refuses_one_without():
    network = PoseNet(validate_config({"network": {"backbone": "small_cnn", "image_size": 32}}))
    spec = export_spec_of(network)
    assert list(spec.outputs) == ["translation", "quaternion"]
    assert [tuple(t.shape) for t in spec.module(torch.zeros(2, 3, 32, 32))] == [(2, 3), (2, 4)]
    with pytest.raises(CubeposeError, match="Linear cannot be exported: give it export_spec"):
        export_spec_of(torch.nn.Linear(1, 1))
