"""A headless Chromium from the system packages (shared by a module) and the world the
browser tests run on: `gpu-reactor run` as a process against the test database and the
fake Runpod, whose pods are real worker processes (tests/faults/rig.py).

Without a browser the browser tests skip with one line; `.ci/run` installs Debian's
``chromium`` and ``chromium-driver``. Nothing here downloads a browser or a driver.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.runpod_v2 import run_fake_runpod
from tests.faults.rig import PROCESSORS, FaultRig

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
NO_BROWSER = (
    "console browser tests: no chromium + chromedriver on PATH "
    "(apt-get install chromium chromium-driver)"
)


def _browser_paths() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's tests (a page each, cookies cleared)."""
    paths = _browser_paths()
    if paths is None:
        pytest.skip(NO_BROWSER)
    webdriver = pytest.importorskip("selenium.webdriver", reason=NO_BROWSER)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, db_dsn: str, worker_dsn: str, tmp_path: Path
) -> AsyncIterator[FaultRig]:
    """The fault suite's world; every task type without a processor of its own sleeps.
    Pods are not watched: a pod whose worker dies stays RUNNING (a hung container), so
    it is the heartbeat deadline that finds the dead worker, and the page that shows it
    going stale."""
    async with run_fake_runpod() as runpod:
        rig = FaultRig(
            name=request.node.name,
            db_dsn=db_dsn,
            worker_dsn=worker_dsn,
            runpod=runpod,
            tmp_path=tmp_path,
        )
        extra = dict(rig.values["WORKER_EXTRA_ENV"], WORKER_PROCESSORS=f"{PROCESSORS},*=sleep")
        rig.configure(WORKER_EXTRA_ENV=extra)
        try:
            yield rig
        finally:
            # A stopped reactor leaves its fleet running (by design); close() stops the
            # pods' worker processes, and nothing may be alive after it.
            await rig.reactors.stop_all()
            await rig.close()
    alive = [p.name for p in rig.reactors.alive] + [p.worker_id for p in rig.pods.alive()]
    assert not alive, f"left running: {alive}"
