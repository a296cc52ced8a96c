"""The web console in a real browser (headless Chromium from the system's packages).

`gpu-reactor run` runs as a process against real Postgres and the fake Runpod, whose
pods are real worker processes. The page is opened once, signed in with the token, and
then only watched: what the issue asks it to show must arrive by itself (a marker set
in the page's window proves no reload happened). Every wait is on a condition, with a
timeout; Selenium's blocking calls run in a thread so the fake Runpod keeps answering.
A screenshot (desktop and phone width) is written to the test's tmp_path, and copied to
$CONSOLE_SCREENSHOT_DIR when that is set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from reactor.db.embedded import free_port
from reactor.ops.status import StatusView
from tests.faults.rig import GPU_A, GPU_B, FaultRig

T = TypeVar("T")
TOKEN = "console-token-8d41c2"
XSS = "<script>alert(1)</script>"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def until(driver: Any, check: Callable[[Any], T], what: str, timeout: float = 20) -> T:
    """WebDriverWait in a thread: ``check(driver)`` until truthy (JS errors retried)."""
    from selenium.common.exceptions import JavascriptException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=(StaleElementReferenceException, JavascriptException),
    )
    return await asyncio.to_thread(wait.until, check, f"timed out waiting for {what}")


def js(script: str) -> Callable[[Any], Any]:
    return lambda driver: driver.execute_script(script)


PAGE_NUMBERS = """
const t = (id) => document.getElementById(id).textContent;
return {snapshot_at: document.getElementById('main').dataset.snapshotAt,
        queued: t('q-queued'), in_progress: t('q-in-progress'), workers: t('w-count'),
        rows: [...document.querySelectorAll('#workers-table tbody tr[data-worker-id]')]
              .map((r) => r.dataset.workerId)};
"""


async def _status(http: aiohttp.ClientSession, base: str) -> StatusView:
    async with http.get(f"{base}/status", headers=BEARER) as resp:
        assert resp.status == 200
        return StatusView.model_validate_json(await resp.text())


async def _page_matches_status(driver: Any, http: aiohttp.ClientSession, base: str) -> None:
    """The page's queue and worker counts equal /status's for the same snapshot."""
    deadline = time.monotonic() + 15
    while True:
        view = await _status(http, base)
        page = await asyncio.to_thread(driver.execute_script, PAGE_NUMBERS)
        snap = view.snapshot_at.isoformat().replace("+00:00", "Z") if view.snapshot_at else ""
        if page["snapshot_at"] == snap and view.queue is not None:
            assert page["queued"] == str(view.queue.queued)
            assert page["in_progress"] == str(view.queue.in_progress)
            assert page["workers"] == str(len(view.workers))
            assert sorted(page["rows"]) == sorted(w.id for w in view.workers)
            return
        assert time.monotonic() < deadline, f"page {page} never showed /status's {snap}"
        await asyncio.sleep(0.05)


async def _sign_in(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    await asyncio.to_thread(driver.get, f"{base}/")
    await until(driver, lambda d: d.find_elements(By.ID, "token"), "the login form")
    assert "/login" in driver.current_url  # the token is enforced
    field = driver.find_element(By.ID, "token")
    await asyncio.to_thread(field.send_keys, "not-the-token\n")
    await until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".error"), "the refusal")
    field = driver.find_element(By.ID, "token")
    await asyncio.to_thread(field.send_keys, TOKEN + "\n")
    await until(driver, js("return document.getElementById('role')?.textContent"), "the page")
    await until(
        driver, js("return document.getElementById('role').textContent === 'LEADER'"), "LEADER"
    )


def _screenshots(driver: Any, out: Path) -> list[Path]:
    shots = [out / "console.png", out / "console-phone.png"]
    driver.save_screenshot(str(shots[0]))
    driver.set_window_size(390, 1400)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    driver.save_screenshot(str(shots[1]))
    driver.set_window_size(1280, 1000)
    assert overflow <= 1, f"the page is {overflow}px wider than a phone's screen"
    copy_to = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, copy_to)
    return shots


async def _in_progress_on(rig: FaultRig, task_id: str) -> str | None:
    rows = await rig.fetch(
        "SELECT worker_id FROM tasks WHERE id = $1::uuid AND status = 'In Progress'", task_id
    )
    return rows[0]["worker_id"] if rows else None


async def test_the_console_follows_the_fleet_live_in_a_real_browser(
    browser: Any, rig: FaultRig, tmp_path: Path
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rig.configure(MAX_ACTIVE_GPUS=2, TASKS_PER_GPU_THRESHOLD=2, SCALE_DOWN_IDLE_SEC=60)
    reactor = rig.start_reactor(REACTOR_HTTP_PORT=port, REACTOR_HTTP_TOKEN=TOKEN)
    await reactor.wait_for("leader_elected")
    async with aiohttp.ClientSession() as http:
        for path in ("/console/events", "/console/state", "/"):
            async with http.get(f"{base}{path}", allow_redirects=False) as resp:
                assert resp.status in (401, 303), path  # nothing without the token
        await _sign_in(browser, base)
        browser.execute_script("window.__noReload = 42")
        await _page_matches_status(browser, http, base)

        # A task inserted while the page is open appears, and so does its worker.
        inserted = time.monotonic()
        [long_task] = await rig.insert(1, seconds=60)
        xss_id = (
            await rig.fetch(
                "INSERT INTO tasks (task_type, params) VALUES ($1, '{\"seconds\": 0.1}') "
                "RETURNING id::text AS id",
                XSS,
            )
        )[0]["id"]
        await until(
            browser,
            js(f"return document.querySelector('#tasks-table tr[data-task-id=\"{long_task}\"]')"),
            "the inserted task on the page",
        )
        shown_after = time.monotonic() - inserted
        cell = await until(
            browser,
            lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-task-id="{xss_id}"] .task-type'),
            "the <script> task type",
        )
        assert cell.text == XSS  # rendered as text
        worker_id = await rig.until(
            lambda: _in_progress_on(rig, long_task), timeout=20, what="a worker on the task"
        )
        row = f"#workers-table tr[data-worker-id='{worker_id}']"
        await until(browser, js(f'return document.querySelector("{row}")'), "its worker")
        await _page_matches_status(browser, http, base)
        # Without POOLS_FILE: no pools view, each worker of the one pool, default.
        assert browser.execute_script("return document.getElementById('pools').hidden")
        pool_cell = browser.execute_script(
            f'return document.querySelector("{row}").lastElementChild.textContent'
        )
        assert pool_cell == "default"

        # Killed mid-task: it turns stale (and is retired for it); its replacement shows.
        rig.pods.kill(worker_id)
        stale = await until(
            browser,
            js(
                f"const id = {worker_id!r};"
                "const live = document.querySelector(`#workers-table tr[data-worker-id='${id}']`);"
                "const ended = document.querySelector(`#ended-table tr[data-worker-id='${id}']`);"
                "return (live && live.dataset.health === 'stale' && 'live') ||"
                " (ended && ended.textContent.includes('heartbeat stale') && ended.textContent);"
            ),
            "the killed worker to turn stale",
        )
        replacement = await until(
            browser,
            js(
                "return [...document.querySelectorAll('#workers-table tr[data-worker-id]')]"
                f".map((r) => r.dataset.workerId).find((id) => id !== {worker_id!r})"
            ),
            "the replacement worker on the page",
        )
        assert replacement != worker_id and stale
        assert browser.execute_script("return window.__noReload") == 42, "the page reloaded"
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - the <script> task type ran nothing
        assert browser.execute_script("return document.scripts.length") == 1
        shots = await asyncio.to_thread(_screenshots, browser, tmp_path)

        # The task's page: its attempts, the worker that held it and why it was requeued.
        await asyncio.to_thread(browser.get, f"{base}/tasks/{long_task}")
        page = browser.find_element(By.TAG_NAME, "main").text
        assert worker_id in page and "lost during attempt 1" in page
        await asyncio.to_thread(browser.get, f"{base}/tasks/{xss_id}")
        assert XSS in browser.find_element(By.TAG_NAME, "main").text
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        await asyncio.to_thread(browser.get, f"{base}/workers/{worker_id}")
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "heartbeat stale" in page and long_task in page
    for shot in shots:
        assert shot.stat().st_size > 10_000, shot
    print(f"\nconsole: an inserted task was on the page {shown_after * 1000:.0f} ms later")
    print(f"console screenshots: {', '.join(map(str, shots))}")


POOLS_TOML = f"""
[pools.big]
task_types = ["fault"]
runpod_gpu_types = ["{GPU_A}"]
max_active_gpus = 1

[pools.small]
task_types = ["fault", "caption"]
runpod_gpu_types = ["{GPU_B}"]
max_active_gpus = 1
"""

POOL_ROWS = """
return Object.fromEntries([...document.querySelectorAll('#pools-table tr[data-pool]')]
  .map((r) => [r.dataset.pool, [...r.cells].map((c) => c.textContent)]));
"""


async def test_the_console_shows_each_pool_and_the_tasks_no_pool_runs(
    browser: Any, rig: FaultRig, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    pools_file = tmp_path / "pools.toml"
    pools_file.write_text(POOLS_TOML)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rig.configure(MAX_ACTIVE_GPUS=3, TASKS_PER_GPU_THRESHOLD=2, SCALE_DOWN_IDLE_SEC=60)
    reactor = rig.start_reactor(
        REACTOR_HTTP_PORT=port, REACTOR_HTTP_TOKEN=TOKEN, POOLS_FILE=str(pools_file)
    )
    await reactor.wait_for("leader_elected")
    async with aiohttp.ClientSession() as http:
        browser.delete_all_cookies()  # cookies are per host, not port: sign in afresh
        await _sign_in(browser, base)
        browser.execute_script("window.__noReload = 7")
        await until(browser, js("return !document.getElementById('pools').hidden"), "pools")
        rows = await until(browser, js(POOL_ROWS), "a row per pool")
        assert list(rows) == ["big", "small"]  # in the file's order
        assert rows["big"][1:3] == ["fault", GPU_A] and rows["small"][1] == "fault, caption"

        # Three tasks: two fit the big pool (one GPU, two tasks each), one spills to small;
        # two of a type no pool runs are shown, and alerted on, by type.
        await rig.insert(3, seconds=60)
        await rig.fetch("INSERT INTO tasks (task_type) VALUES ('mystery'), ('mystery')")
        rows = await until(
            browser,
            lambda d: (
                (r := d.execute_script(POOL_ROWS))
                and r["big"][3].startswith("1 / 1 / 1")
                and r["small"][3].startswith("1 / 1 / 1")
                and r
            ),
            "a worker in each pool",
            timeout=30,
        )
        assert rows["big"][6] == "0 / 1" and rows["small"][6] == "1 / 0"  # spilled in / out
        unrouted = await until(
            browser,
            js("const u = document.getElementById('unrouted');return !u.hidden && u.textContent;"),
            "the tasks no pool runs",
        )
        assert "2 queued task(s) of types no pool runs" in unrouted and "2 mystery" in unrouted
        alert = await until(
            browser,
            js("return document.querySelector('[data-alert=unrouted_tasks]')?.textContent"),
            "the unrouted tasks' alert",
        )
        assert "mystery" in alert
        async with http.get(f"{base}/status", headers=BEARER) as resp:
            view = StatusView.model_validate_json(await resp.text())
        assert [(p.name, p.live_workers) for p in view.pools] == [("big", 1), ("small", 1)]
        by_pool = {w.pool: w for w in view.workers}
        assert by_pool["big"].gpu_type == GPU_A and by_pool["small"].gpu_type == GPU_B
        assert view.unrouted.by_type == {"mystery": 2}
        small = by_pool["small"].id
        cell = browser.execute_script(
            f"return document.querySelector(\"#workers-table tr[data-worker-id='{small}']\")"
            ".lastElementChild.textContent"
        )
        assert cell == "small"
        assert browser.execute_script("return window.__noReload") == 7, "the page reloaded"
        await asyncio.to_thread(_pool_screenshot, browser, tmp_path)

        # The worker's page names its pool and what the pool runs.
        await asyncio.to_thread(browser.get, f"{base}/workers/{small}")
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "small (runs fault, caption)" in page


def _pool_screenshot(driver: Any, out: Path) -> None:
    shot = out / "console-pools.png"
    driver.save_screenshot(str(shot))
    copy_to = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, copy_to)
