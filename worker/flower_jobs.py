"""The Jobs pages of ``ela flower``: ``/jobs``, a run's page, Run now, and the page's live feed.

Flower's pages know tasks; these know the env's jobs. The data is :mod:`ela.ops.jobs_view`
(read from the bucket, like ``ela status``); this module is the Tornado side. The handlers are
Flower handlers, so :mod:`worker.flower_app`'s guard puts them behind the same credentials as
every Flower page, and they use Flower's layout (``base.html``, whose nav bar gains "Jobs") and
static files: the page loads nothing from the network.

Run now is a POST from the page. Flower's own check refuses cross-site requests (Fetch metadata,
``Origin``), and on top of it Tornado's XSRF token is required: the ``_xsrf`` cookie set with the
page must come back in the form. A browser sends basic-auth credentials with every request to
the origin, another site's form included, so the credentials alone prove nothing here. Flower's
API (``POST /api/task/send-task/...``) keeps Flower's own rules: its clients carry no cookie.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import tornado.template
import tornado.web
from flower.views import BaseHandler
from tornado.ioloop import IOLoop

from ela.config import IngestionConfig
from ela.errors import InputError
from ela.ops import jobs_view as jv
from ela.ops.status import Freshness, failing_since_success
from ela.run_input import check_run_id
from ela.sinks import bucket_url, open_bucket
from ela.text import plural  # the words of `ela status`
from worker.flower_app import require_auth

TEMPLATES = os.path.join(os.path.dirname(__file__), "flower_templates")
_T = TypeVar("_T")


def _config() -> IngestionConfig:
    from worker.app import config  # the env's config, as the worker and Flower's app load it

    return config


@functools.cache
def board() -> jv.JobsBoard:
    """The process's one board: its cache serves every request."""
    config = _config()
    return jv.JobsBoard(config, open_bucket(bucket_url(config.global_.gcs_bucket)))


def _loaded(fresh: bool) -> jv.Board:
    """The page's data: the last load when it will do (``fresh`` false), else a new load."""
    last = board().last
    return last if last is not None and not fresh else board().build()


async def _blocking(call: Callable[..., _T], *args: Any) -> _T:
    """Run bucket reads and broker sends on Flower's thread pool, not its event loop."""
    return await IOLoop.current().run_in_executor(None, functools.partial(call, *args))


def _one_line(exc: BaseException) -> str:
    text = f"{exc}".strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class _JobsHandler(BaseHandler):
    """What the Jobs handlers share: the config, Flower's task state, the rows' namespace."""

    @property
    def config(self) -> IngestionConfig:
        return _config()

    def tasks(self) -> list[Any]:
        # Flower's event state is only touched on its event loop (this thread).
        return list(self.application.events.state.tasks.values())

    def row_namespace(self, board: jv.Board, flights: dict[str, list[jv.Flight]]) -> dict[str, Any]:
        return {
            "board": board,
            "flights": flights,
            "jv": jv,
            "freshness_text": Freshness.text,
            "fail_since_success": failing_since_success,
            "plural": plural,
            "now": datetime.now(UTC),  # a board may be reused: flights are aged from now
        }

    async def read(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call`` on Flower's thread pool; a bucket that cannot be read is a one-line 503."""
        try:
            return await _blocking(call, *args)
        except Exception as exc:  # unreachable, missing, or no credentials for it
            url = bucket_url(self.config.global_.gcs_bucket)
            raise tornado.web.HTTPError(503, f"cannot read {url}: {_one_line(exc)}") from exc

    def refuse(self, status: int, message: str) -> None:
        """A one-line refusal: JSON for the page's script, text for anything else."""
        self.set_status(status)
        if "application/json" in self.request.headers.get("Accept", ""):
            self.finish({"error": message})
        else:
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(message + "\n")


class JobsPage(_JobsHandler):
    """``GET /jobs``: every job and group of the env."""

    async def get(self) -> None:
        tasks = self.tasks()
        # Taken before the bucket is read: events arriving meanwhile reach the page's next poll.
        version, _, _ = jv.activity(tasks, self.config, 0.0)
        built = await self.read(_loaded, True)
        flights = jv.in_flight(tasks, self.config)
        self.render("ela_jobs.html", version=version, **self.row_namespace(built, flights))


class LiveFeed(_JobsHandler):
    """``GET /jobs/live?after=T``: the rows of the jobs and groups whose runs moved after T.

    ``T`` is the newest Flower event the page has seen (``version`` of the answer). The bucket
    is read again only when one of those runs ended; ``all=1`` sends every row, read afresh
    (the page asks every few minutes: freshness moves with the clock, not only with events).
    """

    async def get(self) -> None:
        try:
            after = float(self.get_query_argument("after", "0"))
        except ValueError:
            self.refuse(400, "after: expected the version number of the last answer")
            return
        everything = self.get_query_argument("all", "") == "1"
        tasks = self.tasks()
        version, changed, ended = jv.activity(tasks, self.config, after)
        if everything:
            changed = {*self.config.jobs, *self.config.job_groups}
        answer: dict[str, Any] = {"version": version, "jobs": {}, "groups": {}}
        if changed:
            built = await self.read(_loaded, ended or everything)
            namespace = self.row_namespace(built, jv.in_flight(tasks, self.config))
            for view in built.jobs:
                if view.name in changed:
                    html = self.render_string("ela_job_row.html", view=view, **namespace)
                    answer["jobs"][view.name] = html.decode()
            for group, spec in built.groups.items():
                if group in changed:
                    html = self.render_string(
                        "ela_group_row.html", group=group, spec=spec, **namespace
                    )
                    answer["groups"][group] = html.decode()
        answer["as_of"] = jv.local_time(datetime.now(UTC), self.config.global_.tz)
        self.set_header("Cache-Control", "no-store")
        self.finish(answer)


class RunNow(_JobsHandler):
    """``POST /jobs/run``: send a job's task or ``tasks.run_group``, checked by ela.run_input."""

    def check_xsrf_cookie(self) -> None:
        # Tornado checks this before prepare(), where the guard asks for credentials: ask here
        # first, so that a request without them is a 401 like everywhere else.
        require_auth(self)
        super().check_xsrf_cookie()  # Flower's: a cross-site or other-origin request is refused
        tornado.web.RequestHandler.check_xsrf_cookie(self)  # and the page's token must match

    async def post(self) -> None:
        target = self.get_body_argument("target", "")
        form = {k: self.get_body_argument(k, "") for k in jv.OVERRIDES}
        try:
            task, kwargs = jv.run_request(self.config, target, form)
        except InputError as exc:
            self.refuse(400, str(exc))
            return
        try:
            sent = await _blocking(functools.partial(self.capp.send_task, task, kwargs=kwargs))
        except Exception as exc:  # the broker is down or refuses
            self.refuse(503, f"{task}: not sent: {_one_line(exc)}")
            return
        answer = {
            "task_id": sent.id,
            "task": task,
            "target": target,
            "kwargs": kwargs,
            "task_url": self.reverse_url("task", sent.id),
        }
        if "application/json" in self.request.headers.get("Accept", ""):
            self.finish(answer)
        else:  # a form posted without the page's script: back to the page
            self.redirect(f"{self.reverse_url('jobs')}#job-{target}", status=303)


class RunPage(_JobsHandler):
    """``GET /jobs/JOB/runs/RUN_ID``: the run's manifest in full, or its error object."""

    async def get(self, job: str, run_id: str) -> None:
        config = self.config
        if job not in config.jobs:
            raise tornado.web.HTTPError(404, f"{job!r} is not a job of {config.path}")
        try:
            check_run_id(run_id)
        except InputError as exc:
            raise tornado.web.HTTPError(404, str(exc)) from None
        record = await self.read(lambda: board().run(job, run_id))
        tasks = self.application.events.state.tasks
        flights = jv.in_flight([tasks[run_id]] if run_id in tasks else [], config)
        if record is None:
            self.set_status(404)
        self.render(
            "ela_run.html",
            job=job,
            run_id=run_id,
            record=record,
            flight=next(iter(flights.get(job, [])), None),
            known_to_flower=run_id in tasks,
            bucket=board().bucket.url,
            tz=config.global_.tz,
            jv=jv,
            pretty=_pretty,
        )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str)


def routes() -> list[tornado.web.URLSpec]:
    """The Jobs pages' routes, named for ``reverse_url`` (Flower prefixes them with
    ``--url_prefix`` like its own)."""
    return [
        tornado.web.url(r"/jobs", JobsPage, name="jobs"),
        tornado.web.url(r"/jobs/live", LiveFeed, name="jobs-live"),
        tornado.web.url(r"/jobs/run", RunNow, name="jobs-run"),
        tornado.web.url(r"/jobs/([a-z][a-z0-9_]*)/runs/([^/]+)", RunPage, name="jobs-run-page"),
    ]


NAV_ANCHOR = 'class="app-nav navbar-nav"'
NAV_ITEM = """
        <li class="nav-item">
          <a class="nav-link{% if active_tab == 'jobs' %} active{% end %}"
            href="{{ reverse_url('jobs') }}"
            {% if active_tab == 'jobs' %}aria-current="page"{% end %}>Jobs</a>
        </li>
"""


def with_jobs_link(navbar: str) -> str:
    """Flower's ``navbar.html`` with "Jobs" after its own tabs (unchanged if its markup moved)."""
    start = navbar.find(NAV_ANCHOR)
    end = navbar.find("</ul>", start)
    if start < 0 or end < 0:
        return navbar
    return navbar[:end] + NAV_ITEM.lstrip("\n") + "      " + navbar[end:]


class Templates(tornado.template.Loader):
    """Flower's templates, ours (``worker/flower_templates``), and Flower's nav bar with Jobs."""

    def _create_template(self, name: str) -> tornado.template.Template:
        ours = os.path.join(TEMPLATES, name)
        path = ours if os.path.exists(ours) else os.path.join(self.root, name)
        with open(path, "rb") as f:
            text = f.read().decode()
        if name == "navbar.html":
            text = with_jobs_link(text)
        return tornado.template.Template(text, name=name, loader=self)
