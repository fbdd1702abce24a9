"""The instances in a batch's targets, one layout for one and several per image: what every target codec reads."""

from __future__ import annotations

import torch

Targets = dict[str, torch.Tensor]


def instance_poses(targets: Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every instance's translation (B, M, 3) and quaternion (B, M, 4), and which slots hold one (B, M): the
    dataset's ``translations``, ``quaternions`` and ``instance_count`` (``data/max_instances`` above 1), else
    its one ``translation`` and ``quaternion`` as M = 1."""
    if "translations" not in targets:
        translation = targets["translation"]
        present = torch.ones(len(translation), 1, dtype=torch.bool, device=translation.device)
        return translation[:, None], targets["quaternion"][:, None], present
    translations = targets["translations"]
    slots = torch.arange(translations.shape[1], device=translations.device)
    return translations, targets["quaternions"], slots < targets["instance_count"][:, None]
