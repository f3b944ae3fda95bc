"""Redraw docs/overview.png: a throwaway stack (own redis-server on a free loopback port, api,
worker, dashboard) under a light mixed load for a few minutes, then the Overview in chromium.

    .venv/bin/python docs/overview_screenshot.py [seconds]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamq.testing import CHROMIUM, CHROMIUM_FLAGS, RedisServer, Stack

OUT = Path(__file__).resolve().parent / "overview.png"


def main(seconds: float) -> None:
    redis = RedisServer()
    stack = Stack(redis, Path(tempfile.mkdtemp(prefix="streamq-shot-")), STREAMQ_WORKER_CONCURRENCY="4")
    try:
        stack.start("api", "worker", "dashboard")
        rng = random.Random(7)
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # about 8 tasks/s in bursts, some failing
            burst = rng.choice([2, 3, 4, 20])
            for _ in range(burst):
                if rng.random() < 0.06:
                    stack.submit(type="fail", payload="demo failure", max_retries=0, priority=rng.randint(1, 5))
                else:
                    stack.submit(type="sleep", payload=round(rng.uniform(0.01, 0.4), 3), priority=rng.randint(1, 5))
            time.sleep(rng.uniform(0.3, 1.5))
        time.sleep(3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{stack.dashboard_url}/#/overview")
            page.get_by_test_id("chart-run").locator("canvas").wait_for()
            time.sleep(1)
            page.screenshot(path=str(OUT))
            browser.close()
        print(f"wrote {OUT}")
    finally:
        stack.close()
        redis.stop()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 240)
