"""``ela validate`` on hostile bytes: a seeded mutation fuzzer, and the cases it is built from.

Whatever the bytes, validation ends within two seconds of CPU with exit status 0 or 1 and one
line per problem: never a traceback, never a hang, never the internal-error fallback of
``ela.config.loads`` (which exists so a user never sees a traceback, but which a test must never
reach: each case it would catch is a bug to fix).
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ela import config as config_module
from ela.cli import main
from ela.errors import ConfigError
from ela.sandbox.processes import REPO

SEED = 20261129
CASES = 600
CASE_SECONDS = 2.0
SHIPPED = (REPO / "ingestion-config-dev.yaml").read_bytes()


def set_global(key: str, value: bytes) -> bytes:
    """The shipped file with ``global.<key>``'s value replaced by ``value`` (raw YAML)."""
    line = re.compile(rb"^(  %s:) .*$" % key.encode(), re.MULTILINE)
    edited, count = line.subn(lambda m: m.group(1) + b" " + value, SHIPPED, 1)
    assert count == 1, f"no global.{key} in the shipped file"
    return edited


# Fragments that each reached a different branch of the YAML library or the validator.
SNIPPETS = [
    b"&a ",
    b"*a",
    b"<<: *a",
    b"<<: [*a, *b]",
    b"!!int abc",
    b"!!bool maybe",
    b"!!float x",
    b"!!null y",
    b"!!timestamp 2020-13-45",
    b"!!binary zz$",
    b"!!set {a, b}",
    b"!!omap [a]",
    b"!!python/object:os.system",
    b"!ela custom",
    b"? [a, b]\n: c",
    b"? {a: 1}\n: c",
    b"{",
    b"[",
    b'"',
    b"'",
    b"\t",
    b"\x00",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xef\xbb\xbf",
    b"\r\n",
    b"%YAML 1.1\n---\n",
    b"---\n",
    b"...\n",
    b"|",
    b">-",
    b"- ",
    b": ",
    b"#",
    b"~",
    b".nan",
    b"0x1F",
    b"1_000",
    b"yes",
    b"99999999999999999999999999",
    b"-1",
    b"2001-12-14t21:59:43.10-05:00",
    b"\\u0000",
    b'"\\ud800"',
]


def alias_bomb(levels: int = 9, width: int = 9) -> bytes:
    """The 'billion laughs': each level lists the previous one ``width`` times (323 bytes)."""
    lines = [b'a0: &a0 ["lol"]']
    for n in range(1, levels + 1):
        refs = b", ".join([b"*a%d" % (n - 1)] * width)
        lines.append(b"a%d: &a%d [%s]" % (n, n, refs))
    return b"\n".join(lines) + b"\n"


def many_keys(count: int = 10_000) -> bytes:
    return SHIPPED + b"".join(b"k%d: %d\n" % (i, i) for i in range(count))


CRAFTED: dict[str, bytes] = {
    "alias bomb": alias_bomb(),
    "alias bomb under jobs": SHIPPED.replace(b"jobs:\n", b"jobs:\n  bomb: " + b"*x\n", 1),
    "recursive alias": b"a: &a [*a]\n",
    "recursive mapping alias": b"global: &g\n  self: *g\n",
    "recursive merge": b"a: &a\n  <<: *a\n",
    "merge of a scalar": b"a: &a 1\nb:\n  <<: *a\n",
    "undefined alias": b"a: *nope\n",
    "10,000 keys": many_keys(),
    "40,000 keys": many_keys(40_000),
    "deep nesting": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep mapping": b"".join(b"  " * i + b"k:\n" for i in range(3000)),
    "one long line": b"a: " + b"x" * (2 << 20) + b"\n",
    "NUL bytes": SHIPPED.replace(b"global:", b"glo\x00bal:", 1),
    "invalid UTF-8": SHIPPED.replace(b"global:", b"glob\xffal:", 1),
    "UTF-16": SHIPPED.decode().encode("utf-16"),
    "empty": b"",
    "only a comment": b"# nothing\n",
    "a list": b"- a\n- b\n",
    "a scalar": b"hello\n",
    "a job name ending in a newline": SHIPPED.replace(
        b"  todoist_projects:\n", b'  "todoist_projects\\n":\n', 1
    ),
    "integer keys": b"1: 2\n3: [4]\n",
    "a mapping key": b"? {a: 1}\n: 2\n",
    "tags everywhere": b"global: !!map {environment: !!str dev, retry_attempts: !!int abc}\n",
    "a bool maybe": SHIPPED.replace(b"enabled: true", b"enabled: !!bool maybe", 1),
    "multiple documents": SHIPPED + b"---\n" + SHIPPED,
    "a huge integer": set_global("retry_attempts", b"9" * 400),
    "a time zone that is a folder": set_global("timezone", b"Europe"),
    "a time zone with a NUL": set_global("timezone", b'"UT\\0C"'),
    "a time zone climbing out": set_global("timezone", b"../../etc/passwd"),
}


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits of ``data``: flips, cuts, copies and inserted snippets."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(out) + 1)
        kind = rng.randrange(5)
        if kind == 0 and out:
            out[min(where, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:
            del out[where : where + rng.randint(1, 64)]
        elif kind == 2 and out:
            start = rng.randrange(len(out))
            out[where:where] = out[start : start + rng.randint(1, 200)]
        else:
            line_start = out.rfind(b"\n", 0, where) + 1
            out[line_start:line_start] = rng.choice(SNIPPETS) + rng.choice([b" ", b"", b"\n"])
    return bytes(out)


def fuzz_cases() -> Iterator[tuple[str, bytes]]:
    yield from CRAFTED.items()
    rng = random.Random(SEED)
    for n in range(CASES):
        yield f"mutation {n}", mutate(rng, rng.choice([SHIPPED, *CRAFTED.values()])[:20_000])


class Hang(BaseException):  # not caught by `except Exception` in the code under test
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` once the block has spent ``seconds`` of CPU: a loop that never ends
    does, and a busy machine (parallel tests) does not make a quick case look hung."""

    def expired(*_: Any) -> None:
        raise Hang

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_every_fuzzed_file_ends_in_one_line_per_problem_within_two_seconds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ingestion-config-dev.yaml"
    failures: list[str] = []
    for name, data in fuzz_cases():
        path.write_bytes(data)
        try:
            with deadline(CASE_SECONDS):
                status, output = validate(path)
        except Hang:
            failures.append(f"{name}: still running after {CASE_SECONDS} s")
            continue
        except Exception as exc:  # what a user would have seen as a traceback
            failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if status not in (0, 1) or "Traceback" in output or config_module.INTERNAL in output:
            failures.append(f"{name}: exit {status}: {output[:300]!r}")
        elif status == 1 and not all(line.startswith(f"{path}:") for line in output.splitlines()):
            failures.append(f"{name}: a line without FILE:LINE: {output[:300]!r}")
        elif any(len(line) > 400 for line in output.splitlines()):
            failures.append(f"{name}: a line of over 400 characters")
    assert not failures, f"{len(failures)} of {CASES + len(CRAFTED)} cases:\n" + "\n".join(
        failures[:40]
    )


def problems(data: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "ingestion-config-dev.yaml"
    path.write_bytes(data)
    with deadline(CASE_SECONDS), pytest.raises(ConfigError) as caught:
        config_module.load(path)
    return [line.removeprefix(f"{path}:") for line in caught.value.problems]


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    assert problems(alias_bomb(), tmp_path) == [
        f"1: the file expands to more than {config_module.MAX_VALUES:,} values through its "
        "aliases (&anchor / *alias); write the values out"
    ]


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = set_global("timezone", b"&z [*z]")
    line = text.split(b"&z [*z]")[0].count(b"\n") + 1
    assert problems(text, tmp_path) == [
        f"{line}: global.timezone: an alias inside this value refers to it (recursive)"
    ]


def test_merge_keys_merge(tmp_path: Path) -> None:
    text = SHIPPED.decode().replace(
        "global:\n", "x-defaults: &defaults\n  retry_attempts: 2\nglobal:\n  <<: *defaults\n", 1
    )
    text = text.replace("  retry_attempts: 2\n  max_parallel", "  max_parallel", 1)
    (line,) = problems(text.encode(), tmp_path)  # merged: only the extra top-level key is left
    assert line.startswith(f"{text.split('x-defaults')[0].count(chr(10)) + 1}: x-defaults: unknown")


def test_invalid_utf8_names_its_line(tmp_path: Path) -> None:
    lines = SHIPPED.split(b"\n")
    lines[4] = lines[4] + b" # caf\xe9"
    (line,) = problems(b"\n".join(lines), tmp_path)
    assert line == "5: not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_a_job_name_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    found = problems(CRAFTED["a job name ending in a newline"], tmp_path)
    assert any("jobs.'todoist_projects\\n'" in p and "lower_snake_case" in p for p in found), found


def test_many_problems_are_capped_and_counted(tmp_path: Path) -> None:
    found = problems(many_keys(), tmp_path)
    assert len(found) == config_module.MAX_PROBLEMS + 1
    assert found[-1].endswith(
        f"and {10_000 - config_module.MAX_PROBLEMS:,} more problems; fix these first"
    )


def test_a_file_too_large_to_be_a_config_is_refused_unread(tmp_path: Path) -> None:
    (line,) = problems(b"#" * (config_module.MAX_BYTES + 1), tmp_path)
    assert line == (
        f"1: the file is over {config_module.MAX_BYTES // 1024} KiB; a config is a few KiB"
    )
