"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Uploads a real clip, waits for the verdict and checks what the page shows; a file that is not media
shows its error. Skips, saying how to install the browser, only when Chromium is truly missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfdetect.serve.app import ServeSettings, create_app
from tests.conftest import media
from tests.serve.conftest import CLIP
from tests.serve.test_restart import free_port

INSTALL = (
    "install the browser: apt-get install -y chromium chromium-driver (Debian/Ubuntu; .ci/run does it) "
    "and pip install selenium (the dev extra)"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,2000",
)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(why: str) -> None:
    """Skip, or fail where the browser is required (``DFDETECT_REQUIRE_BROWSER=1``, set by .ci/run)."""
    if os.environ.get("DFDETECT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why}; {INSTALL}")
    pytest.skip(f"{why}; {INSTALL}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from selenium import webdriver
    except ImportError:
        _unavailable("selenium is missing")
    binary = os.environ.get("CHROMIUM") or _find("chromium", "chromium-browser", "google-chrome")
    driver_path = os.environ.get("CHROMEDRIVER") or _find("chromedriver")
    if not binary or not driver_path:
        _unavailable("no Chromium / ChromeDriver on PATH")
    profile = tempfile.mkdtemp(prefix="dfdetect-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_detector) -> Iterator[str]:
    """The app under uvicorn on a free port, in a thread of this process."""
    import uvicorn

    settings = ServeSettings(data_dir=tmp_path_factory.mktemp("browser-data"), device="cpu", explain=True)
    app = create_app(settings, lambda: tiny_detector)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)


def _wait(driver, css: str, timeout: float = 60.0):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def test_upload_a_real_clip_and_read_the_verdict(browser, server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server + "/")
    _wait(driver, "#server")
    assert driver.title.startswith("dfdetect")
    assert driver.find_element(By.ID, "key-box").is_displayed() is False, "no key needed on a local server"
    driver.find_element(By.ID, "file-input").send_keys(str(media(CLIP)))

    card = _wait(driver, ".job[data-state='done'] .banner")
    job = card.find_element(By.XPATH, "./ancestor::article")
    verdict = job.find_element(By.CSS_SELECTOR, ".banner .verdict").text.lower()
    assert verdict in ("real", "fake", "uncertain")
    p_fake = job.find_element(By.CSS_SELECTOR, ".banner .p-fake").text
    assert p_fake.split("\n")[0].endswith("%") and "p(fake)" in p_fake
    assert job.find_element(By.CSS_SELECTOR, ".name").text == Path(CLIP).name
    assert "status: ok" in job.find_element(By.CSS_SELECTOR, ".banner .side").text
    bars = job.find_elements(By.CSS_SELECTOR, ".modalities .modrow")
    assert {b.text.split("\n")[0] for b in bars} >= {"visual"}
    assert len(job.find_elements(By.CSS_SELECTOR, "svg.timeline rect.sec")) >= 3, "one bar per second"
    thumbs = job.find_elements(By.CSS_SELECTOR, ".faces .face img")
    assert thumbs and driver.execute_script("return arguments[0].naturalWidth", thumbs[0]) == 96
    assert job.find_elements(By.CSS_SELECTOR, ".cams .cam img"), "Grad-CAM heatmaps are shown"
    pill = job.find_element(By.CSS_SELECTOR, ".verdict-pill").text
    assert pill.startswith(verdict) and pill.endswith("%")

    driver.refresh()  # the list of past scans survives a reload
    past = _wait(driver, ".job[data-state='done']")
    assert past.find_element(By.CSS_SELECTOR, ".name").text == Path(CLIP).name
    assert past.find_element(By.CSS_SELECTOR, ".verdict-pill").text == pill


def test_a_bad_file_shows_its_error(browser, server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    bad = tmp_path / "holiday.mp4"
    bad.write_text("this is a text file with a video extension\n" * 50)
    browser.get(server + "/")
    _wait(browser, "#server")
    browser.find_element(By.ID, "file-input").send_keys(str(bad))
    error = _wait(browser, ".job[data-state='rejected'] .error", timeout=30)
    assert "holiday.mp4" in error.text and "not a video, audio or image file" in error.text
    name = error.find_element(By.XPATH, "./ancestor::article//span[@class='name']")
    assert name.text == "holiday.mp4"
