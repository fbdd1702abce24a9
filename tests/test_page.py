"""The browser page of `cubepose serve`, in a real headless Chromium driven through ChromeDriver: it shows the
model, predicts a chosen image as `cubepose predict` does, draws it, says why a pose was withheld, shows the
server's message for a broken image, and works without the camera. Skipped without Debian's chromium and
chromium-driver (`.ci/run` installs them)."""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from serve_fixtures import SOLVED_NETWORKS, start_serve

from conftest import BIN
from cubepose.config import validate_config
from cubepose.inference.predictor import PosePredictor
from cubepose.inference.training_camera import record_training_camera
from cubepose.models import pose_network

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no headless browser: install Debian's chromium and chromium-driver (.ci/run does)",
)
TRAINING_CAMERA = [70.0, 70.0, 32.0, 32.0]  # the checkpoint's, in its 64 px input
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained zoom-in model that records a training camera (its poses are withheld, with the reason)."""
    config = validate_config(copy.deepcopy(SOLVED_NETWORKS["zoom"]))
    camera = record_training_camera(np.array([TRAINING_CAMERA]), config["network"]["image_size"])
    path = tmp_path_factory.mktemp("page") / "model-0.ckpt"
    PosePredictor(pose_network(config).eval(), config, training_camera=camera).save(path)
    return path


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    url, process = start_serve(BIN / "cubepose", checkpoint, tmp_path_factory.mktemp("page-log") / "serve.log")
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium without network access beyond loopback and without a camera."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(browser, css: str, count: int = 1):
    """The elements matching ``css`` once there are at least ``count``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_SECONDS).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, css)) >= count)
    return browser.find_elements(By.CSS_SELECTOR, css)


def choose_files(browser, *paths: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "files").send_keys("\n".join(str(path) for path in paths))


def camera_fields(browser) -> list[float]:
    from selenium.webdriver.common.by import By

    return [float(browser.find_element(By.ID, key).get_attribute("value")) for key in ("fx", "fy", "cx", "cy")]


def cli_prediction(checkpoint: Path, image: Path, *flags: str) -> dict:
    result = subprocess.run(
        [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), *flags, str(image)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_the_page_predicts_a_chosen_image_as_cubepose_predict_does(browser, server, checkpoint, tiny_data):
    from selenium.webdriver.common.by import By

    image = sorted(tiny_data["test"].glob("*/rgb_*.png"))[0]
    browser.get(server + "/")
    identity = requests.get(server + "/model", timeout=10).json()
    wait_for(browser, "#model dd:nth-of-type(6)")
    assert identity["sha256"] in browser.find_element(By.ID, "model").text
    assert camera_fields(browser) == TRAINING_CAMERA  # prefilled: the training camera in its 64 px input
    assert "training camera in the model's 64 px input" in browser.find_element(By.ID, "camera-source").text

    choose_files(browser, image)
    (result,) = wait_for(browser, "article.result")
    rows = result.find_elements(By.CSS_SELECTOR, "table.poses tr.withheld")
    expected = cli_prediction(checkpoint, image)["poses"]
    assert len(rows) == len(expected) == 1
    shown = [float(rows[0].find_element(By.CSS_SELECTOR, f"td[data-axis='{axis}']").text) for axis in "xyz"]
    np.testing.assert_allclose(shown, 100 * np.array(expected[0]["translation"]), atol=0.006)
    assert rows[0].find_elements(By.TAG_NAME, "td")[-1].text == expected[0]["reason"]  # withheld, and why
    canvas = result.find_element(By.TAG_NAME, "canvas")
    assert canvas.get_attribute("role") == "img" and "pose 1 (withheld) at x" in canvas.get_attribute("aria-label")
    # the fields now hold the training camera scaled to this 48 px image: what the poses were solved with
    np.testing.assert_allclose(camera_fields(browser), np.array(TRAINING_CAMERA) * 48 / 64, atol=1e-3)
    assert f"the camera {image.name}'s poses were solved with" in browser.find_element(By.ID, "camera-source").text

    browser.find_element(By.ID, "camera-own").click()  # the user's own camera, typed in
    for key, value in zip(("fx", "fy", "cx", "cy"), ("50", "50", "24", "24"), strict=True):
        browser.find_element(By.ID, key).clear()
        browser.find_element(By.ID, key).send_keys(value)
    choose_files(browser, image)
    newest = wait_for(browser, "article.result", 2)[0]
    expected = cli_prediction(checkpoint, image, "--intrinsics", "50", "50", "24", "24")["poses"][0]
    shown = [float(newest.find_element(By.CSS_SELECTOR, f"td[data-axis='{axis}']").text) for axis in "xyz"]
    np.testing.assert_allclose(shown, 100 * np.array(expected["translation"]), atol=0.006)


def test_a_broken_image_shows_the_servers_message_and_the_camera_is_optional(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    browser.get(server + "/")
    choose_files(browser, broken)
    (alert,) = wait_for(browser, "article.result [role='alert']")
    message = requests.post(server + "/predict", data=broken.read_bytes(), timeout=10).json()["error"]
    assert alert.text == f"broken.png: {message}"

    browser.find_element(By.ID, "camera-start").click()  # no camera and no permission here
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, WAIT_SECONDS).until(lambda _: "camera" in status.text)
    assert "The camera is not available" in status.text and "choose image files instead" in status.text
    assert browser.find_element(By.ID, "files").is_enabled()  # files still work
    for control in browser.find_elements(By.TAG_NAME, "input"):
        label = browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
        assert label, f"input #{control.get_attribute('id')} has no label"  # every control is named for a reader
