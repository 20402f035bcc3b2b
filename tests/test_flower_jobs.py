"""The Jobs pages of ``ela flower`` (worker/flower_jobs.py), against a real worker, a real
``ela flower`` process, the Todoist emulator and a local bucket; the last test drives them in
headless Chromium (Debian's ``chromium`` and ``chromium-driver``, through Selenium).

Screenshots of the page are saved in the test's folder, and into ``$ELA_SCREENSHOTS`` when it
is set (``ELA_SCREENSHOTS=docs .venv/bin/pytest tests/test_flower_jobs.py`` makes
the docs' screenshots).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from ela import config as config_module
from ela.config import IngestionConfig
from ela.sandbox.emulators.server import Fault
from ela.sandbox.emulators.todoist import TodoistEmulator
from ela.sandbox.processes import REPO, base_environ, wait_for
from ela.sandbox.stores import delete_prefixed
from ela.sinks import GCSBucket, LocalBucket, get_json
from tests.conftest import WorkerFactory
from tests.test_flower import PASSWORD, USER, FlowerProcess, running_flower
from worker.flower_jobs import with_jobs_link

pytestmark = [pytest.mark.timeout(300), pytest.mark.integration]

GOOD = (USER, PASSWORD)
JSON = {"Accept": "application/json"}


@dataclasses.dataclass
class Stack:
    flower: FlowerProcess
    todoist: TodoistEmulator
    bucket: LocalBucket
    config: IngestionConfig

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.flower.url + path, auth=GOOD, timeout=30, **kwargs)

    def rows(self) -> dict[str, str]:
        """Every job's row as the page renders it (the live feed's ``all=1`` answer)."""
        answer = self.get("/jobs/live?after=0&all=1")
        assert answer.status_code == 200, answer.text
        rows: dict[str, str] = answer.json()["jobs"]
        return rows

    def send(self, task: str, job: str) -> str:
        """Send ``task`` for ``job`` through Flower's own API (basic auth, no cookie); its id."""
        sent = requests.post(
            f"{self.flower.url}/api/task/send-task/{task}",
            json={"kwargs": {"job": job}},
            auth=GOOD,
            timeout=30,
        )
        assert sent.status_code == 200, sent.text
        task_id: str = sent.json()["task-id"]
        return task_id

    def manifest(self, job: str, run_id: str) -> dict[str, Any] | None:
        service = self.config.jobs[job].service
        found: dict[str, Any] | None = get_json(self.bucket, f"{service}/_runs/{job}/{run_id}.json")
        return found


@pytest.fixture
def stack(worker_factory: WorkerFactory, tmp_path: Path) -> Iterator[Stack]:
    """The shipped dev config (every job), with only Todoist's emulator behind it."""
    with TodoistEmulator(projects=7, tasks=30) as todoist:
        worker = worker_factory(extra_env=todoist.environ())
        environ = {**worker.environ, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
        with running_flower(environ, tmp_path / "flower.log") as flower:
            config = config_module.load(REPO / "ingestion-config-dev.yaml")
            yield Stack(flower, todoist, LocalBucket(tmp_path / "bucket"), config)


def xsrf(session: requests.Session, stack: Stack) -> str:
    """Load the page as a browser does: the ``_xsrf`` cookie, and the token of its forms."""
    page = session.get(stack.flower.url + "/jobs", auth=GOOD, timeout=30)
    assert page.status_code == 200, page.text[:2000]
    assert "_xsrf" in session.cookies
    found = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert found, "no _xsrf field in the page's forms"
    return found.group(1)


def test_jobs_pages_need_credentials_and_run_now_needs_the_pages_token(stack: Stack) -> None:
    url = stack.flower.url
    some_run = str(uuid.uuid4())
    for path in ("/jobs", "/jobs/live?after=0", f"/jobs/todoist_tasks/runs/{some_run}"):
        for auth in (None, (USER, "wrong"), ("someone", PASSWORD)):
            refused = requests.get(url + path, auth=auth, timeout=10)
            assert refused.status_code == 401, (path, auth, refused.status_code)
            assert "todoist" not in refused.text
    run_url = f"{url}/jobs/run"
    assert (
        requests.post(run_url, data={"target": "todoist_projects"}, timeout=10).status_code == 401
    )

    # With credentials, but not the page's token: refused, whatever else the request carries.
    with requests.Session() as session:
        token = xsrf(session, stack)
        bare = requests.post(run_url, data={"target": "todoist_projects"}, auth=GOOD, timeout=10)
        assert bare.status_code == 403, bare.text[:500]
        cookie_only = session.post(run_url, data={"target": "todoist_projects"}, auth=GOOD)
        assert cookie_only.status_code == 403
        with requests.Session() as other:
            # a token of another session, without that session's cookie
            foreign = other.post(
                run_url,
                data={"target": "todoist_projects", "_xsrf": xsrf(requests.Session(), stack)},
                auth=GOOD,
                timeout=10,
            )
            assert foreign.status_code == 403
        cross_site = session.post(
            run_url,
            data={"target": "todoist_projects", "_xsrf": token},
            auth=GOOD,
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross_site.status_code == 403

        # Input the schema refuses: 400 with its one line, as JSON for the page, text otherwise.
        bad = session.post(
            run_url,
            data={"target": "todoist_projects", "limit": "10", "_xsrf": token},
            auth=GOOD,
            headers=JSON,
        )
        assert bad.status_code == 400
        assert bad.json() == {
            "error": "tasks.todoist.projects: limit: does not apply to todoist_projects "
            "(it takes no limit)"
        }
        text = session.post(run_url, data={"target": "todoist_projcts", "_xsrf": token}, auth=GOOD)
        assert text.status_code == 400
        assert text.text.startswith("tasks.run_group: group: 'todoist_projcts' is neither")
        assert text.text.rstrip().endswith("did you mean todoist_projects?")
        assert stack.todoist.calls_to("/projects") == 0  # nothing refused was sent

        sent = session.post(
            run_url, data={"target": "todoist_projects", "_xsrf": token}, auth=GOOD, headers=JSON
        )
        assert sent.status_code == 200, sent.text
        answer = sent.json()
        assert answer["task"] == "tasks.todoist.projects"
        assert answer["kwargs"] == {"job": "todoist_projects"}
        assert answer["task_url"] == f"/task/{answer['task_id']}"
        manifest = wait_for(
            lambda: stack.manifest("todoist_projects", answer["task_id"]), 60, "the run's manifest"
        )
        assert manifest["records"] == len(stack.todoist.projects)

    # Flower's own API keeps Flower's rules: basic auth, no cookie, no token.
    api = stack.send("tasks.todoist.tasks", "todoist_tasks")
    wait_for(lambda: stack.manifest("todoist_tasks", api), 60, "the API's run")


def test_a_run_waiting_for_its_retry_shows_in_flight(stack: Stack) -> None:
    """Todoist answers 503 with Retry-After: 30, so the worker holds the run for 30 s; the
    page says so, from Flower's events, with the run's id."""
    stack.todoist.inject(Fault(status=503, retry_after=30, path="/projects"))
    run_id = stack.send("tasks.todoist.projects", "todoist_projects")

    def waiting() -> str:
        row = stack.rows()["todoist_projects"]
        flight = re.search(rf'<div class="flight" data-run="{run_id}">(.*?)</div>', row, re.S)
        return flight.group(1) if flight and "retry waiting" in flight.group(1) else ""

    shown = wait_for(waiting, 60, "the retry on the page", 0.5)
    assert re.search(r"in \d+ s", shown), shown  # when it is due
    assert stack.manifest("todoist_projects", run_id) is None


def test_the_page_reads_the_bucket_so_a_redis_wipe_loses_nothing(
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    with TodoistEmulator(projects=7, tasks=30) as todoist:
        worker = worker_factory(extra_env=todoist.environ())
        ok = worker.send("tasks.todoist.projects", job="todoist_projects")
        assert ok.get(timeout=60)["records"] == 7
        todoist.inject(Fault(status=401, path="/tasks"))
        failed = worker.send("tasks.todoist.tasks", job="todoist_tasks")
        with pytest.raises(Exception, match="401"):
            failed.get(timeout=60, propagate=True)
        worker.process.stop()
    delete_prefixed(redis_client, redis_prefix)  # results, events, queues: all gone
    assert not list(redis_client.scan_iter(match=f"{redis_prefix}*"))

    environ = {**worker.environ, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    with running_flower(environ, tmp_path / "flower.log") as flower:
        config = config_module.load(REPO / "ingestion-config-dev.yaml")
        stack = Stack(flower, todoist, LocalBucket(tmp_path / "bucket"), config)
        rows = stack.rows()
        assert list(rows) == list(config.jobs)
        assert '<span class="records">7</span>' in rows["todoist_projects"]
        assert f"run {ok.id[:8]}" in rows["todoist_projects"]
        assert f'data-run="{ok.id}"' in rows["todoist_projects"]  # its bar
        assert '<span class="badge fresh-fresh">fresh</span>' in rows["todoist_projects"]
        assert '<span class="badge text-bg-danger">reauth</span>' in rows["todoist_tasks"]
        assert re.search(f'class="fail"\\s+data-run="{failed.id}"', rows["todoist_tasks"])
        assert '<span class="badge fresh-never">never</span>' in rows["spotify_saved_tracks"]

        page = stack.get(f"/jobs/todoist_projects/runs/{ok.id}")
        assert page.status_code == 200
        manifest = get_json(stack.bucket, f"todoist/_runs/todoist_projects/{ok.id}.json")
        landing = manifest["objects"][0]["name"]
        assert str(stack.bucket.root.resolve() / landing) in page.text
        assert '<dd id="run-records">7</dd>' in page.text
        assert "(Flower has no events of it" in page.text  # this Flower never saw it run

        error = stack.get(f"/jobs/todoist_tasks/runs/{failed.id}")
        assert error.status_code == 200
        assert '<dd id="run-kind">reauth</dd>' in error.text
        assert re.search(r"<li>[a-z_]+\.py:\d+ in \w+</li>", error.text), error.text[-3000:]

        assert stack.get(f"/jobs/todoist_tasks/runs/{ok.id}").status_code == 404  # not its run
        assert stack.get("/jobs/todoist_tasks/runs/..%2F..%2Fx").status_code == 404
        assert stack.get(f"/jobs/nope/runs/{ok.id}").status_code == 404


def test_on_gcs_runs_link_their_objects_by_uri_and_cloud_console(
    worker_factory: WorkerFactory, gcs_bucket: GCSBucket, storage_emulator: str, tmp_path: Path
) -> None:
    """The bucket of production: read through google-cloud-storage (the emulator)."""
    gcs = {"STORAGE_EMULATOR_HOST": storage_emulator, "ELA_BUCKET_URL": gcs_bucket.url}
    with TodoistEmulator(projects=7, tasks=30) as todoist:
        worker = worker_factory(extra_env={**todoist.environ(), **gcs})
        first = worker.call("tasks.todoist.projects", job="todoist_projects")
        manifest = worker.call("tasks.todoist.projects", job="todoist_projects")
        run_id = first["run_id"]
        environ = {**worker.environ, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
        with running_flower(environ, tmp_path / "flower.log") as flower:
            config = config_module.load(REPO / "ingestion-config-dev.yaml")
            stack = Stack(flower, todoist, LocalBucket(tmp_path / "unused"), config)
            row = stack.rows()["todoist_projects"]
            assert f"run {manifest['run_id'][:8]}" in row  # the newest of the two
            assert "2 runs, 0 failed" in row
            page = stack.get(f"/jobs/todoist_projects/runs/{run_id}")
    assert page.status_code == 200
    bucket = gcs_bucket.url.removeprefix("gs://")
    for name in (f"todoist/_runs/todoist_projects/{run_id}.json", first["objects"][0]["name"]):
        assert f'<code class="object-uri">gs://{bucket}/{name}</code>' in page.text
        console = f"https://console.cloud.google.com/storage/browser/_details/{bucket}/{name}"
        assert f'href="{console}"' in page.text


def test_a_bucket_that_cannot_be_read_is_a_one_line_503(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    environ = base_environ(
        redis_url,
        {
            "ELA_ENV": "dev",
            "ELA_REDIS_PREFIX": redis_prefix,
            "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}",
            "HOME": str(tmp_path),  # no application-default credentials either
        },
    )
    with running_flower(environ, tmp_path / "flower.log") as flower:
        for path in (
            "/jobs",
            "/jobs/live?after=0&all=1",
            f"/jobs/todoist_tasks/runs/{uuid.uuid4()}",
        ):
            answer = requests.get(flower.url + path, auth=GOOD, timeout=30)
            assert answer.status_code == 503, (path, answer.text[:500])
            assert answer.text.startswith(
                "cannot read gs://ela-dp-dev: FatalError: gs://ela-dp-dev: no usable Google "
                "credentials; set GOOGLE_APPLICATION_CREDENTIALS"
            ), answer.text
            assert "\n" not in answer.text.strip() and "Traceback" not in answer.text


def test_flowers_nav_bar_gains_jobs_after_its_own_tabs() -> None:
    import flower

    navbar = (Path(flower.__file__).parent / "templates" / "navbar.html").read_text()
    patched = with_jobs_link(navbar)
    assert patched != navbar
    tabs = re.findall(r"reverse_url\('(\w+)'\)", patched.split("app-nav-secondary")[0])
    assert tabs == ["main", "workers", "tasks", "broker", "jobs"]


# -- in a browser ---------------------------------------------------------------------------------


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromium-driver, or skip saying what is missing."""
    browser = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        missing = " and ".join(
            p for p, f in (("chromium", browser), ("chromedriver", driver)) if not f
        )
        pytest.skip(
            f"{missing} not found: install Debian's chromium and chromium-driver "
            "(scripts/test does when run as root)"
        )
    return browser, driver


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    binary, driver_path = chromium_paths()
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
    )
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def document_status(driver: Any, url: str) -> int:
    """The HTTP status of ``url`` as the browser got it (from its DevTools network log)."""
    driver.get(url)
    path = url.split("://", 1)[1].split("/", 1)[1]
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.responseReceived":
            continue
        # Not the new tab's own blank document (data:,), which may be logged late.
        response = message["params"]["response"]
        if message["params"]["type"] == "Document" and response["url"].endswith(f"/{path}"):
            return int(response["status"])
    raise AssertionError(f"no document response for {url}")


@contextlib.contextmanager
def other_site(html: str) -> Iterator[str]:
    """A page served from another origin (another port), as an attacker's site would be."""
    body = html.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    """The whole page as a PNG in the test's folder (and in $ELA_SCREENSHOTS, if set)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1600, min(max(int(height) + 200, 600), 4000))
    driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'})")
    path = tmp_path / name
    driver.save_screenshot(str(path))
    driver.set_window_size(1600, 1000)
    if target := os.environ.get("ELA_SCREENSHOTS"):
        shutil.copy(path, Path(target) / name)


def test_in_a_browser_log_in_see_every_job_run_one_and_watch_it_land(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    url, config = stack.flower.url, stack.config
    by_css = browser.find_element

    def on_page(predicate: Any, what: str, timeout: float = 30) -> Any:
        """wait_for on the page's DOM, where the live feed replaces a row at any moment."""

        def look() -> Any:
            try:
                return predicate()
            except StaleElementReferenceException:
                return None

        return wait_for(look, timeout, what, 0.2)

    def click(selector: str) -> None:
        element = by_css(By.CSS_SELECTOR, selector)
        # Flower's CSS scrolls smoothly: a click during the scroll lands elsewhere.
        browser.execute_script(
            "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", element
        )
        element.click()

    def run_status(prefix: str) -> str:
        def said() -> str:
            text: str = by_css(By.ID, "run-status").text
            return text if text.startswith(prefix) else ""

        return str(on_page(said, f"the page to say {prefix!r}"))

    # Without credentials the browser gets Flower's 401, for the page as for the rest.
    assert document_status(browser, f"{url}/jobs") == 401
    assert "todoist" not in browser.page_source

    # Log in (basic auth, as the browser's prompt would), on one of Flower's own pages; its nav
    # bar leads to Jobs.
    logged_in = url.replace("http://", f"http://{USER}:{PASSWORD}@")
    assert document_status(browser, f"{logged_in}/workers") == 200
    click("a.nav-link[href='/jobs']")
    wait_for(lambda: browser.current_url.endswith("/jobs"), 20, "the Jobs page")
    jobs = [r.get_attribute("data-job") for r in browser.find_elements(By.CSS_SELECTOR, ".job-row")]
    assert jobs == list(config.jobs)
    groups = [
        r.get_attribute("data-group") for r in browser.find_elements(By.CSS_SELECTOR, ".group-row")
    ]
    assert groups == list(config.job_groups)
    assert "never" in by_css(By.CSS_SELECTOR, "#job-spotify_saved_tracks .freshness").text
    browser.execute_script("window.stillTheSamePage = true")

    def shown(selector: str) -> Any:
        """Elements matching ``selector`` in a row as the page shows it now."""
        return on_page(lambda: browser.find_elements(By.CSS_SELECTOR, selector), selector, 60)

    # Run now: the run is in flight (the emulator answers slowly), then lands, on this page.
    stack.todoist.latency = 4.0
    click("#job-todoist_projects button[type=submit]")
    said = run_status("Sent tasks.todoist.projects for todoist_projects (run ")
    run_id = said.split("(run ", 1)[1].split(")", 1)[0]
    shown(f"#job-todoist_projects .flight[data-run='{run_id}']")
    manifest = wait_for(lambda: stack.manifest("todoist_projects", run_id), 60, "the manifest")
    assert manifest["records"] == 7
    stack.todoist.latency = 0.0

    def landed() -> bool:
        cells = by_css(By.ID, "job-todoist_projects")
        return (
            f"run {run_id[:8]}" in cells.find_element(By.CSS_SELECTOR, ".last-success").text
            and cells.find_element(By.CSS_SELECTOR, ".records").text == "7"
            and bool(cells.find_elements(By.CSS_SELECTOR, f"rect.ok[data-run='{run_id}']"))
            and not cells.find_elements(By.CSS_SELECTOR, ".flight")
        )

    on_page(landed, "the run on the page")
    assert browser.execute_script("return window.stillTheSamePage") is True  # no reload

    # Overrides go through the same schema as every entry point: a refusal is its one line.
    click("#job-spotify_saved_tracks details summary")
    by_css(By.CSS_SELECTOR, "#job-spotify_saved_tracks input[name=limit]").send_keys("abc")
    click("#job-spotify_saved_tracks button[type=submit]")
    refusal = run_status("tasks.spotify.saved_tracks:")
    assert refusal == "tasks.spotify.saved_tracks: limit: expected a whole number, got 'abc'"
    assert "alert-danger" in by_css(By.ID, "run-status").get_attribute("class")

    # A failing run is marked: its kind, and a bar in the failure colour.
    stack.todoist.inject(Fault(status=401, path="/tasks"))
    click("#job-todoist_tasks button[type=submit]")
    failed_id = run_status("Sent tasks.todoist.tasks").split("(run ", 1)[1].split(")", 1)[0]
    shown(f"#job-todoist_tasks rect.fail[data-run='{failed_id}']")
    failure = on_page(lambda: by_css(By.CSS_SELECTOR, "#job-todoist_tasks .last-failure").text, "")
    assert "reauth" in failure
    bars = "#job-todoist_projects rect.ok"
    for runs in (2, 3):  # a history to look at, and one more run in flight for the screenshot
        click("#job-todoist_projects button[type=submit]")
        on_page(lambda n=runs: len(browser.find_elements(By.CSS_SELECTOR, bars)) == n, "bars", 60)
    stack.todoist.latency = 3.0
    click("#job-todoist_projects button[type=submit]")
    shown("#job-todoist_projects .flight")
    screenshot(browser, tmp_path, "flower-jobs.png")
    stack.todoist.latency = 0.0

    # A run's page: the manifest in full, its objects, and Flower's task page.
    click(f"rect[data-run='{run_id}']")
    on_page(lambda: "/runs/" in browser.current_url, "the run's page")
    assert by_css(By.ID, "run-records").text == "7"
    landing = by_css(By.CSS_SELECTOR, ".landing-object").text
    assert landing == str(stack.bucket.root.resolve() / manifest["objects"][0]["name"])
    assert json.loads(by_css(By.ID, "run-json").text) == manifest
    screenshot(browser, tmp_path, "flower-run.png")
    click("#task-link")
    wait_for(lambda: f"/task/{run_id}" in browser.current_url, 20, "Flower's task page")
    result = browser.find_element(By.XPATH, "//dt[text()='Result']/following-sibling::dd").text
    assert result.startswith(
        "{'outcome': 'succeeded', 'job': 'todoist_projects', 'records': 7, 'objects': [{'name': "
    ), result
    assert "'api_calls': 1" in result

    # CSRF: another site's form, posted by this logged-in browser, is refused and sends nothing.
    before = stack.todoist.calls_to("/projects")
    attack = (
        f'<form id="f" method="post" action="{url}/jobs/run">'
        '<input name="target" value="todoist_projects"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    with other_site(attack) as site:
        browser.get_log("performance")
        browser.get(site)
        wait_for(lambda: browser.current_url.startswith(url), 20, "the form's post")
        statuses = [
            json.loads(e["message"])["message"]["params"]["response"]["status"]
            for e in browser.get_log("performance")
            if '"Network.responseReceived"' in e["message"] and "/jobs/run" in e["message"]
        ]
    assert statuses == [403], statuses
    assert "Cross-site request forbidden" in browser.page_source
    # ... and so is the page's own origin without the page's token.
    browser.get(f"{url}/jobs")
    answer = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(new URL('/jobs/run', location.origin), {
          method: 'POST', body: new URLSearchParams({target: 'todoist_projects'})
        }).then(r => done(r.status));
        """
    )
    assert answer == 403
    assert stack.todoist.calls_to("/projects") == before
