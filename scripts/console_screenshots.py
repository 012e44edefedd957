"""Screenshots of the console on a running demo (docs/console/demo-*.png): start `synapse-stream demo --hold`
first, then run this with the demo's console address. Uses Debian's chromium + chromium-driver."""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser_helpers import SHOTS, chrome, log_in, shown_key, wait  # noqa: E402


def main(url: str = "http://127.0.0.1:8088", detector: str = "positive-reviews", wait_s: str = "60") -> None:
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    d = chrome()
    try:
        log_in(d, url, "analyst", "analyst-demo")
        d.get(url + "/review")       # while the demo runs: a candidate on screen
        wait(d, lambda d: shown_key(d) is not None, timeout=120)
        d.save_screenshot(str(SHOTS / "demo-review.png"))
        d.get(url + "/detectors")
        time.sleep(1)
        d.save_screenshot(str(SHOTS / "demo-detectors.png"))
        d.get(url + f"/detectors/{detector}")
        time.sleep(float(wait_s))    # the demo's later rounds, a classifier, samples for the chart
        d.get(url + f"/detectors/{detector}")
        wait(d, lambda d: d.find_element(By.ID, "precision").text != "–", timeout=30)
        d.set_window_size(1280, 1900)
        d.save_screenshot(str(SHOTS / "demo-detector.png"))
    finally:
        d.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])
