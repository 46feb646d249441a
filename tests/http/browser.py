"""Opens glstream's page in a real headless Chromium (selenium + /usr/bin/chromedriver) and
records what a person would see: two screenshots of the stream image taken a while apart, the
stats shown with each, and a screenshot of the whole page.

Usage: browser.py URL OUT_DIR [WIDTHxHEIGHT]
Writes OUT_DIR/stream1.png, stream2.png, page.png and prints one JSON line with the stats text
read from the page at each capture."""

import json
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def stats(driver):
    return {key: driver.find_element(By.ID, key).text
            for key in ("status", "frame", "fps", "size", "format", "clients", "dropped")}


def main():
    url, out = sys.argv[1], sys.argv[2]
    width, height = (int(v) for v in (sys.argv[3] if len(sys.argv) > 3 else "1024x700").split("x"))
    profile = tempfile.mkdtemp(prefix="glstream-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(url)
        wait = WebDriverWait(driver, 60, poll_frequency=0.1)
        # The stream shows once the image has a frame; the stats once a poll came back.
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('stream'); return i.complete !== undefined && i.naturalWidth > 0;"))
        wait.until(lambda d: d.find_element(By.ID, "frame").text.isdigit())
        image = driver.find_element(By.ID, "stream")
        first = stats(driver)
        image.screenshot(f"{out}/stream1.png")
        # Until the page shows a later frame (stats poll every 500 ms, the stream at --preview-fps).
        wait.until(lambda d: d.find_element(By.ID, "frame").text != first["frame"]
                   and d.find_element(By.ID, "fps").text not in ("", "–"))
        time.sleep(0.5)
        second = stats(driver)
        image.screenshot(f"{out}/stream2.png")
        driver.save_screenshot(f"{out}/page.png")
        print(json.dumps({"first": first, "second": second,
                          "natural": driver.execute_script(
                              "const i = document.getElementById('stream'); return [i.naturalWidth, i.naturalHeight];")}))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
