"""Held-apart looks: the same scenes and labels in a look the training randomisation never renders."""

from __future__ import annotations

import logging
from dataclasses import replace

import cv2
import numpy as np
import pytest

from cubepose.cli import main
from cubepose.data.formats import read_dataset
from cubepose.synth.generate import face_atlas, scene_options
from cubepose.synth.gl_renderer import GLRenderer
from cubepose.synth.scene import STYLES, sample_scene
from cubepose.synth.styles import letter_faces, photographs, style_image, style_scene
from cubepose.synth.textures import FACE_COLOURS


def _generate(out, *args: str) -> object:
    assert main(["generate", str(out), "--workers", "1", "--count", "3", "--seed", "4", *args]) == 0
    return read_dataset(out)


def test_every_look_keeps_the_scenes_labels_and_changes_the_pixels(tmp_path):
    plain = _generate(tmp_path / "randomised", "--image-size", "48")
    for style in (name for name in STYLES if name != "randomised"):
        styled = _generate(tmp_path / style, "--image-size", "48", "--style", style)
        np.testing.assert_array_equal(styled.translations, plain.translations)
        np.testing.assert_array_equal(styled.quaternions, plain.quaternions)
        np.testing.assert_array_equal(styled.cameras, plain.cameras)
        first, other = (cv2.imread(str(index.image_paths[0])) for index in (plain, styled))
        change = np.abs(first.astype(int) - other).mean()
        assert change > (0 if style == "letters" else 1), style  # letters: only the object's faces change


def test_an_unknown_look_or_letters_on_own_faces_is_refused_naming_the_flag(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    assert main(["generate", str(tmp_path / "a"), "--count", "1", "--style", "cartoon"]) == 2
    assert "--style must be one of randomised, structured, photos, camera, letters" in caplog.text
    assert main(["generate", str(tmp_path / "b"), "--count", "1", "--style", "letters", "--faces", "plain"]) == 2
    assert "leave out --faces" in caplog.text
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_structured_scene_stands_a_table_on_legs_over_a_floor_with_an_arm_and_casts_shadows():
    options = scene_options("ur3", camera=None, rotation="yaw")
    scene = sample_scene(np.random.default_rng([1, 0, 0]), options)
    room = style_scene(scene, "structured", np.random.default_rng(0))
    assert room.objects is scene.objects and room.distractors is scene.distractors
    legs = [part for part in room.fixtures if part.shape == "box" and part.size[1] > 0.5]
    assert len(legs) == 4 and all((leg.translation - room.table_centre) @ room.up < 0 for leg in legs)
    arm = [part for part in room.fixtures if not (part.shape == "box" and part.size[1] > 0.5)]
    assert sum(part.shape == "cylinder" for part in arm) == 4  # base and three links
    assert all((part.translation - room.table_centre) @ room.up > 0 for part in arm)
    assert (room.table_centre - room.floor_centre) @ room.up == pytest.approx(0.75)

    renderer = GLRenderer(96, 64)
    lit = replace(room, noise=0.0, blur=0.0, camera=None, vertical_fov_deg=60.0)
    shaded, unshaded = renderer.render(lit).astype(int), renderer.render(replace(lit, shadows=False)).astype(int)
    renderer.release()
    darker = (shaded < unshaded - 2).all(axis=2)
    assert darker.sum() > 0 and not (shaded > unshaded + 2).any()  # shadows only darken


def test_photographs_are_real_pictures_from_scikit_image_and_show_behind_the_object():
    photos = photographs()
    assert len(photos) >= 10 and all(photo.ndim == 3 and min(photo.shape[:2]) >= 300 for photo in photos)
    scene = sample_scene(np.random.default_rng([2, 0, 0]), scene_options())
    pictured = style_scene(scene, "photos", np.random.default_rng(1))
    bare = replace(pictured, table_size=0.0, distractors=[], objects=[], noise=0.0, blur=0.0)
    renderer = GLRenderer(64, 64)
    image = renderer.render(bare)
    renderer.release()
    expected = cv2.resize(pictured.background_texture, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - expected).mean() < 12


def test_the_camera_look_blurs_compresses_and_repeats_with_its_seed():
    scene = replace(sample_scene(np.random.default_rng([3, 0, 0]), scene_options()), noise=0.0, blur=0.0)
    renderer = GLRenderer(64, 64)
    image = renderer.render(scene)
    renderer.release()
    recorded = style_image(image, "camera", np.random.default_rng(5))
    assert recorded.shape == image.shape and recorded.dtype == np.uint8
    np.testing.assert_array_equal(recorded, style_image(image, "camera", np.random.default_rng(5)))
    assert np.abs(recorded.astype(int) - image).mean() > 3
    assert style_image(image, "randomised", np.random.default_rng(5)) is image


def test_letters_change_only_the_object_and_keep_each_faces_colour():
    faces = letter_faces()
    for face, colour in zip(faces, FACE_COLOURS, strict=True):
        dark = (face.sum(axis=2) < 100).mean()
        assert 0.03 < dark < 0.4  # a letter, not a blank or a blot
        np.testing.assert_array_equal(face[2, 2], colour)  # the die's colour around it
    scene = replace(
        sample_scene(np.random.default_rng([5, 0, 0]), scene_options(distance=(0.3, 0.3))), noise=0.0, blur=0.0
    )
    renderer = GLRenderer(64, 64, faces=face_atlas("die"))  # one context at a time: each renders in its own
    plain, mask = renderer.render(scene, mask=True)
    renderer.release()
    renderer = GLRenderer(64, 64, faces=face_atlas("die", "letters"))
    lettered = renderer.render(scene)
    renderer.release()
    changed = (plain != lettered).any(axis=2)
    edges = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # anti-aliased border pixels
    assert changed.any() and not changed[~edges].any()
