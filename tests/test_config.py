"""Config schema: base.yaml spells out the defaults; bad keys fail with a message naming them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

import cubepose.losses  # noqa: F401  (registers the losses' and the network's config checks)
from conftest import REPO, load_configs
from cubepose.config import COMPONENT_CHECKS, SCHEMA, Option, component_check, defaults, validate_config
from cubepose.errors import ConfigError


def test_base_yaml_holds_every_key_with_the_schema_default():
    base = yaml.safe_load((REPO / "configs" / "base.yaml").read_text())
    assert base == defaults()


def schema_keys(schema: dict = SCHEMA, prefix: str = "") -> dict[str, Option]:
    """Every key cubepose reads (edflow's own pass-through keys excluded), as ``tree/key`` paths."""
    keys = {}
    for key, spec in schema.items():
        if isinstance(spec, dict):
            keys.update(schema_keys(spec, f"{prefix}{key}/"))
        elif spec.kind is not None:
            keys[prefix + key] = spec
    return keys


def expanded(token: str) -> list[str]:
    """``data/<split>/root`` and ``optimizer/{type,lr}`` as the keys they stand for."""
    token = token.replace("<split>", "{train,validation,test}")
    match = re.search(r"\{([^}]*)\}", token)
    if match is None:
        return [token]
    return [
        key for part in match.group(1).split(",") for key in expanded(token.replace(match.group(0), part.strip(), 1))
    ]


def readme_config_keys() -> set[str]:
    """The keys the README's configuration table documents; a name without a tree in a row takes the
    tree of the row's first key (`optimizer/schedule`, `warmup_steps`)."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("| key | default | meaning |") :]
    keys = set()
    for row in table[: table.index("\n\n")].splitlines()[2:]:
        tokens = re.findall(r"`([^`]+)`", row.split("|")[1])
        tree = tokens[0].rpartition("/")[0] if tokens else ""
        for token in tokens:
            keys.update(expanded(token if "/" in token or not tree else f"{tree}/{token}"))
    return keys


def test_the_readme_table_documents_every_key_and_no_other():
    schema, documented = schema_keys(), readme_config_keys()
    mappings = [key for key, spec in schema.items() if spec.kind is dict]  # losses: documented per entry
    missing = [k for k in schema if k not in documented and not any(d.startswith(f"{k}/") for d in documented)]
    unknown = [k for k in documented if k not in schema and not any(k.startswith(f"{m}/") for m in mappings)]
    assert not missing, f"keys missing from the README's configuration table: {missing}"
    assert not unknown, f"keys in the README's configuration table that cubepose does not read: {unknown}"


@pytest.mark.parametrize(
    "overlays",
    [
        ("cpu.yaml",),
        ("gpu.yaml",),
        ("cpu.yaml", "test.yaml"),
        ("cpu.yaml", "accurate_cpu.yaml"),
        ("unity_cpu.yaml",),
        ("cpu.yaml", "keypoints_cpu.yaml"),
        ("keypoints_gpu.yaml",),
        ("cpu.yaml", "ur3_cpu.yaml"),
        ("ur3_gpu.yaml",),
    ],
)
def test_shipped_overlays_validate_and_keep_untouched_defaults(overlays):
    config = validate_config(load_configs("base.yaml", *overlays))
    assert config["network"]["pretrained"] is None  # filled although the overlay replaced `network`
    assert config["optimizer"]["betas"] == [0.9, 0.999]
    if "keypoints" in overlays[-1]:  # a keypoint network, whatever the overlay before it set
        assert config["network"]["type"] == "keypoints" and list(config["losses"]) == ["keypoints"]
    if "ur3" in overlays[-1]:  # the zoom-in model, whatever the overlay before it set
        assert config["network"]["type"] == "zoom" and set(config["losses"]) == {"keypoints", "detection"}
        assert config["network"]["zoom"]["depth_tolerance"] == 0.25  # filled in beside the overlay's zoom keys


def test_gpu_overlay_is_unitys_recipe():
    config = validate_config(load_configs("base.yaml", "gpu.yaml"))
    network = {"backbone": "vgg16", "head": "unity_mlp", "rotation": "quaternion", "image_size": 224}
    network.update(pretrained=None)
    assert {key: config["network"][key] for key in network} == network and not config["network"]["crop"]["active"]
    assert (config["batch_size"], config["accumulation_steps"], config["num_epochs"]) == (20, 10, 120)
    adam = {"type": "adam", "lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0}
    assert {key: config["optimizer"][key] for key in adam} == adam
    assert (config["optimizer"]["clip_grad_norm"], config["optimizer"]["schedule"]) == (None, "constant")
    assert config["device"] == "cuda"


def test_misspelt_key_is_named_with_a_suggestion():
    config = load_configs("base.yaml")
    config["network"]["backbon"] = "vgg16"
    with pytest.raises(ConfigError, match=r"unknown key 'network/backbon'; did you mean 'network/backbone'"):
        validate_config(config)


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'batchsize'; did you mean 'batch_size'"):
        validate_config({"batchsize": 3})


def test_mistyped_values_are_all_reported_at_once():
    config = load_configs("base.yaml")
    config["batch_size"] = "many"
    config["network"]["crop"]["active"] = "yes please"
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert "batch_size: expected an integer, got 'many'" in str(err.value)
    assert "network/crop/active: expected true or false" in str(err.value)


def test_numbers_given_as_strings_on_the_command_line_are_accepted():
    config = validate_config({"optimizer": {"lr": "1e-3"}, "losses": {"translation": {"type": "mse", "weight": 2}}})
    assert config["optimizer"]["lr"] == pytest.approx(1e-3)
    assert config["losses"]["translation"]["weight"] == 2.0


def test_unknown_loss_type_and_backbone_list_the_known_names():
    with pytest.raises(
        ConfigError,
        match=r"losses/orientation/type: unknown loss 'msee'; known: add, detection, displacement, geodesic, heatmap, "
        "l1, mse, sign_invariant, smooth_l1",
    ):
        validate_config({"losses": {"orientation": {"type": "msee"}}})
    with pytest.raises(
        ConfigError, match=r"unknown backbone 'resnet9'; known: resnet18, resnet34, small_cnn, small_cnn_hires, vgg16"
    ):
        validate_config({"network": {"backbone": "resnet9"}})


def test_unknown_loss_quantity_is_rejected():
    with pytest.raises(ConfigError, match=r"unknown loss 'losses/rotation'"):
        validate_config({"losses": {"rotation": {"type": "mse", "weight": 1.0}}})


def test_out_of_range_and_bad_choice():
    with pytest.raises(ConfigError) as err:
        validate_config({"batch_size": 0, "device": "tpu"})
    assert "batch_size: 0 is below the minimum 1" in str(err.value)
    assert "device: 'tpu' is not one of auto, cpu, cuda" in str(err.value)


def test_true_and_false_from_the_command_line_are_booleans():
    config = validate_config({"image_cache": "true", "network": {"crop": {"active": "False"}}})
    assert config["image_cache"] is True and config["network"]["crop"]["active"] is False
    with pytest.raises(ConfigError, match="image_cache: expected true or false, got 'yes'"):
        validate_config({"image_cache": "yes"})


def test_overrides_set_nested_keys_like_edflows_command_line():
    from cubepose.config import load_config_files

    paths = [REPO / "configs" / name for name in ("base.yaml", "cpu.yaml", "accurate_cpu.yaml")]
    config = load_config_files(*paths, overrides={"network/rotation": "quaternion", "losses/pose/weight": 2.5})
    assert config["network"]["rotation"] == "quaternion" and config["network"]["backbone"] == "small_cnn"
    assert config["losses"]["pose"] == {"type": "add", "weight": 2.5}
    with pytest.raises(ConfigError, match="unknown key 'network/rotaton'; did you mean 'network/rotation'"):
        load_config_files(*paths, overrides={"network/rotaton": "6d"})
    with pytest.raises(ConfigError, match="cannot set 'seed/x': 'seed' is not a mapping"):
        load_config_files(*paths, overrides={"seed/x": 1})


def test_the_config_module_imports_no_component():
    """Components check their own subtrees; config.py knows none of them (no import cycle)."""
    components = "('cubepose.losses', 'cubepose.models')"
    code = f"import sys, cubepose.config; print([m for m in sys.modules if m.startswith({components})])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_component_registered_outside_the_package_checks_its_own_keys():
    @component_check
    def even_batches(config: dict, errors: list[str]) -> None:
        if config["batch_size"] % 2:
            errors.append(f"batch_size: {config['batch_size']} is odd; my_component needs pairs")

    try:
        assert validate_config({"batch_size": 4})["batch_size"] == 4
        with pytest.raises(ConfigError, match="batch_size: 3 is odd; my_component needs pairs"):
            validate_config({"batch_size": 3})
    finally:
        COMPONENT_CHECKS.remove(even_batches)
