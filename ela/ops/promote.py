"""Copy one job's definition from one config file into another, keeping the target's text.

The target is edited through ruamel.yaml's round-trip mode, so its comments, key order, quoting
and flow-style lists survive; only the promoted job's lines change. The target keeps its own
cron unless a new one is given (schedules are what differ by design between dev and prd),
and the result is validated with :func:`ela.config.loads` before anything is written.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from ela import config as config_module
from ela import cron
from ela.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Promotion:
    """What a promotion would do (or did).

    Attributes:
        job: the promoted job.
        target: the file edited.
        old_text / new_text: the target before and after.
        added: the job did not exist in the target and was appended to ``jobs``.
        schedule: the schedule the job has in the result.
        notes: one line each, things the user should know (a schedule taken from the source).
    """

    job: str
    target: Path
    old_text: str
    new_text: str
    added: bool
    schedule: str
    notes: list[str]

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text

    def unified_diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.old_text.splitlines(keepends=True),
                self.new_text.splitlines(keepends=True),
                fromfile=f"{self.target} (before)",
                tofile=f"{self.target} (after)",
            )
        )


def promote(job: str, source: Path, target: Path, *, schedule: str | None = None) -> Promotion:
    """Compute the promotion of ``job`` from ``source`` into ``target``; writes nothing.

    Args:
        job: a job defined in ``source``.
        source: the validated file the definition comes from.
        target: the file to change; must itself be valid.
        schedule: a new cron for the job in ``target``; None keeps the target's (or, for a job
            new to the target, the source's).

    Raises:
        ConfigError: a file is invalid, or the result would be (``FILE:LINE`` lines).
        KeyError: ``job`` is not in ``source``.
        ValueError: ``schedule`` is not a valid cron.
    """
    source_text = _read(source)
    source_config = config_module.loads(source_text, str(source))
    old_text = _read(target)
    config_module.loads(old_text, str(target))  # refuse to edit a file that is already broken
    if job not in source_config.jobs:
        raise KeyError(f"{job!r} is not a job of {source}; jobs: {', '.join(source_config.jobs)}")
    if schedule is not None:
        try:
            cron.parse(schedule)
        except cron.CronError as exc:
            raise ValueError(f"--cron: {exc}") from None

    # Only the source's values are taken, so its layout does not matter: any loader will do.
    source_doc = _yaml(*_LAYOUTS[0]).load(source_text)
    doc, yaml = _load_rt(old_text)
    jobs = doc["jobs"]
    wanted = copy.deepcopy(source_doc["jobs"][job])
    _take_tail(wanted)  # comments trailing the source's section belong to that file
    notes: list[str] = []
    added = job not in jobs

    tail = _take_tail(jobs)
    if added:
        _rename_cron_key(wanted)
        if schedule is None:
            notes.append(
                f"{job} is new in {target.name}: it takes {source.name}'s cron "
                f"{wanted['cron']!r}; pass --cron to give it another"
            )
        else:
            _set_schedule(wanted, schedule)
        jobs[job] = wanted
    else:
        _update_job(jobs[job], wanted, schedule)
    _give_tail(jobs, tail)

    new_text = _dump(yaml, doc)
    config_module.loads(new_text, str(target))  # the result must validate before it is written
    return Promotion(
        job=job,
        target=target,
        old_text=old_text,
        new_text=new_text,
        added=added,
        schedule=str(jobs[job][_cron_key(jobs[job])]),
        notes=notes,
    )


def _read(path: Path) -> str:
    """The file's text, read once both to validate and to edit (as config.load reads it)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}:1: cannot read the file: {exc.strerror}"]) from None


def write(promotion: Promotion) -> None:
    """Replace the target with the promoted text in one rename, keeping its permissions."""
    target = promotion.target
    mode = target.stat().st_mode & 0o777
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=target.parent, prefix=".promote-", delete=False
    ) as out:
        out.write(promotion.new_text)
    os.chmod(out.name, mode)
    os.replace(out.name, target)


# (mapping, sequence, offset) layouts tried in turn; the shipped files use the first.
_LAYOUTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 4, 0))


def _load_rt(text: str) -> tuple[Any, YAML]:
    """Round-trip load with the layout that dumps the unchanged file back most faithfully.

    ruamel applies one indentation to the whole dump, so the file's own must be found, or every
    untouched line would show up in the diff.
    """
    best: tuple[int, Any, YAML] | None = None
    for mapping, sequence, offset in _LAYOUTS:
        yaml = _yaml(mapping, sequence, offset)
        doc = yaml.load(text)
        changed = _changed_lines(text, _dump(yaml, doc))
        if best is None or changed < best[0]:
            best = (changed, doc, yaml)
        if changed == 0:
            break
    assert best is not None
    return best[1], best[2]


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line (e.g. a dependencies list)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _changed_lines(before: str, after: str) -> int:
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    return sum(1 for line in diff if line[:1] in "+-")


def _dump(yaml: YAML, doc: Any) -> str:
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _update_job(target: CommentedMap, wanted: CommentedMap, schedule: str | None) -> None:
    """Make ``target`` hold ``wanted``'s keys and values, editing in place.

    Keys already in the target keep their position and end-of-line comments; keys the source
    lacks are removed; new keys go after the key that precedes them in the source.
    """
    tail = _take_tail(target)
    for key in [k for k in target if k not in wanted and k not in CRON_KEYS]:
        del target[key]
    order = list(wanted)
    for i, key in enumerate(order):
        if key in CRON_KEYS:
            continue
        if key in target:
            if target[key] != wanted[key]:
                target[key] = wanted[key]
            continue
        before = [k for k in order[:i] if k in target]
        position = list(target).index(before[-1]) + 1 if before else 0
        target.insert(position, key, wanted[key])
    if schedule is not None and schedule != target.get(_cron_key(target)):
        _set_schedule(target, schedule)
    elif not any(key in target for key in CRON_KEYS):
        source_key = _cron_key(wanted)
        target.insert(order.index(source_key), "cron", wanted[source_key])
    _give_tail(target, tail)


# The job's cron key: ``cron``, or the older ``schedule`` a file may still use (it loads).
CRON_KEYS = ("cron", "schedule")


def _cron_key(job: CommentedMap) -> str:
    return next((key for key in CRON_KEYS if key in job), "cron")


def _rename_cron_key(job: CommentedMap) -> None:
    """A job written into a file anew says ``cron``, whatever its source file said."""
    if "schedule" in job and "cron" not in job:
        position = list(job).index("schedule")
        comment = job.ca.items.pop("schedule", None)  # its ``# Every hour``
        job.insert(position, "cron", job.pop("schedule"))
        if comment is not None:
            job.ca.items["cron"] = comment


def _set_schedule(job: CommentedMap, schedule: str) -> None:
    """Set a new cron, dropping the old one's end-of-line comment (``# Every hour``)."""
    key = _cron_key(job)
    job[key] = DoubleQuotedScalarString(schedule)
    entry = job.ca.items.get(key)
    if entry and len(entry) > 2 and entry[2] is not None:
        _, _, rest = entry[2].value.partition("\n")
        if rest:
            entry[2].value = "\n" + rest
        else:
            entry[2] = None


# Comments after the last entry of a block belong, for ruamel, to that entry's deepest last
# scalar; the blank line and comment before the next section would therefore follow whatever
# is appended. These two move such a trailing part from the old last entry to the new one.


def _last_slot(node: Any) -> tuple[Any, Any, int] | None:
    """(container, key, index in its comment entry) of the deepest last scalar of ``node``."""
    if isinstance(node, CommentedMap) and node:
        key, index = list(node)[-1], 2  # ruamel's slot for a map entry's comment
    elif isinstance(node, CommentedSeq) and node:
        key, index = len(node) - 1, 0  # and for a sequence item's
    else:
        return None
    child = node[key]
    if isinstance(child, CommentedMap | CommentedSeq) and child and not child.fa.flow_style():
        deeper = _last_slot(child)
        if deeper is not None:
            return deeper
    return node, key, index


def _take_tail(node: Any) -> str:
    """Cut everything after the first line from the last entry's comment; return the cut."""
    slot = _last_slot(node)
    if slot is None:
        return ""
    container, key, index = slot
    entry = container.ca.items.get(key)
    token = entry[index] if entry and len(entry) > index else None
    if token is None or "\n" not in token.value:
        return ""
    head, _, rest = token.value.partition("\n")
    token.value = head + "\n"
    return rest


def _give_tail(node: Any, rest: str) -> None:
    """Attach ``rest`` (from :func:`_take_tail`) after the deepest last entry of ``node``."""
    if not rest:
        return
    slot = _last_slot(node)
    if slot is None:
        return
    container, key, index = slot
    entry = container.ca.items.setdefault(key, [None, None, None, None][: index + 2])
    while len(entry) <= index:
        entry.append(None)
    token = entry[index]
    if token is None:
        entry[index] = CommentToken("\n" + rest, CommentMark(0), None)
    else:
        token.value = token.value + rest
