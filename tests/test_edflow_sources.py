"""Both layouts from a folder, a zip and the GCS emulator, trained and evaluated by the real `edflow`."""

from __future__ import annotations

import numpy as np
from edflow.data.believers.meta import MetaDataset
from test_edflow_e2e import CONFIGS, REPO, _eval_dirs, _ok, edflow
from test_sources import zip_folder

from cubepose.data.archives import MARKER
from cubepose.synth.generate import GenerationOptions, generate_dataset


def test_legacy_zip_on_gcs_trains_solo_folder_validates_solo_zip_tests(gcs_emulator, tmp_path):
    for name, layout, seed in (("train", "legacy", 11), ("validation", "solo", 12), ("test", "solo", 13)):
        generate_dataset(
            tmp_path / "exports" / name, GenerationOptions(count=16, seed=seed, image_size=40, format=layout)
        )
    exports = tmp_path / "exports"
    bucket = gcs_emulator.bucket({"cube/train.zip": zip_folder(exports / "train", tmp_path / "train.zip")})
    data = {
        "train": f"gs://{bucket}/cube/train.zip",
        "validation": exports / "validation",
        "test": zip_folder(exports / "test", tmp_path / "test.zip"),
    }
    work = tmp_path / "work"
    work.mkdir()
    cache = ["--data/cache_dir", str(tmp_path / "cache")]
    _ok(edflow(["-n", "sources", "-b", *CONFIGS, "-t", "--num_steps", "2", *cache], work, data))
    (run,) = (work / "logs").glob("*_sources")
    (validation_outputs,) = _eval_dirs(run)
    labels = MetaDataset(str(validation_outputs)).labels
    assert labels["translation_true"].shape == (16, 3)
    assert labels["camera"].shape == (16, 4)  # SOLO intrinsics at the 32 px network input
    np.testing.assert_allclose(labels["camera"][:, 2:], 16.0)

    _ok(edflow(["-b", *CONFIGS, str(REPO / "configs" / "test.yaml"), "-p", str(run), *cache], work, data))
    (test_outputs,) = [d for d in _eval_dirs(run) if d != validation_outputs]
    assert MetaDataset(str(test_outputs)).labels["translation_true"].shape == (16, 3)
    assert (test_outputs.parent / "metrics.json").exists()
    assert (tmp_path / "test" / MARKER).exists()  # the test zip was extracted beside itself
    assert (tmp_path / "cache" / "gcs" / bucket / "cube" / "train" / MARKER).exists()  # and the gs:// one in the cache
