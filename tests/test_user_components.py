"""Components registered from outside the package, as a user's project would, trained through the real edflow."""

from __future__ import annotations

import torch
from edflow.data.believers.meta import MetaDataset
from test_edflow_e2e import CONFIGS, _eval_dirs, _ok, edflow

USER_MODULE = '''
"""A user's own loss and quantity, registered when edflow imports this module (config key `model`)."""
from cubepose.losses import QUANTITIES, Quantity, register_loss
from cubepose.models import PoseNet  # noqa: F401  (model: my_components.PoseNet)


@register_loss("cubic", quantities=("depth", "translation"))
def cubic(prediction, target):
    return ((prediction - target).abs() ** 3).mean(dim=-1)


QUANTITIES.register("depth")(
    Quantity(
        ("translation",),
        prediction=lambda outputs: outputs["translation"][:, 2:],
        target=lambda network: lambda targets: targets["translation"][:, 2:],
    )
)
'''


def test_a_loss_and_a_quantity_registered_outside_the_package_train_through_edflow(tiny_data, tmp_path):
    (tmp_path / "my_components.py").write_text(USER_MODULE)  # edflow imports from its working folder
    args = ["-n", "user", "-b", *CONFIGS, "-t", "--num_steps", "3", "--model", "my_components.PoseNet"]
    _ok(edflow([*args, "--losses/depth/type", "cubic", "--losses/depth/weight", "10"], tmp_path, tiny_data))
    (run,) = (tmp_path / "logs").glob("*_user")
    state = torch.load(run / "train" / "checkpoints" / "model-3.ckpt", weights_only=True)
    assert state["config"]["losses"]["depth"] == {"type": "cubic", "weight": 10.0}
    labels = MetaDataset(str(_eval_dirs(run)[0])).labels
    depth_error = (labels["translation_pred"][:, 2] - labels["translation_true"][:, 2]).__abs__() ** 3
    torch.testing.assert_close(torch.as_tensor(labels["loss_depth"]).reshape(-1), torch.as_tensor(depth_error))

    wrong = edflow([*args, "--losses/orientation/type", "cubic"], tmp_path, tiny_data)
    assert wrong.returncode != 0
    assert "losses/orientation/type: 'cubic' does not apply to orientation; use geodesic, l1, mse" in wrong.stderr
