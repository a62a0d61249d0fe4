"""cli/output.py: durations, sizes and times for people, --json on every command, progress."""

import io
import json

import click
import pytest
from click.testing import CliRunner

from drfleet.cli import output
from drfleet.cli.main import main


@pytest.mark.parametrize("seconds, text", [
    (0.14, "0.14 s"), (0.0, "0.00 s"), (4.25, "4.2 s"), (12.4, "12 s"), (123, "2 m 03 s"),
    (3600 + 5 * 60 + 9, "1 h 05 m"), (3 * 86400 + 4 * 3600, "3 d 04 h"), (None, "-"),
])
def test_durations_read_like_people_write_them(seconds, text):
    assert output.duration(seconds) == text


@pytest.mark.parametrize("n, text", [(512, "512 B"), (1500, "1.50 kB"), (12_345_678, "12.3 MB"), (None, "-")])
def test_sizes(n, text):
    assert output.size(n) == text


def test_human_values_are_chosen_by_the_key():
    assert output.human("seconds", 123) == "2 m 03 s"
    assert output.human("plaintext_size", 2_000_000) == "2.00 MB"
    assert output.human("rate_bytes_per_second", 2_000_000) == "2.00 MB/s"
    assert output.human("ok", True) == "yes"
    assert output.human("problems", []) == "[]"


def _leaves(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaves(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_takes_json():
    missing = [" ".join(path) for path, command in _leaves(main)
               if not any("--json" in getattr(p, "opts", ()) for p in command.params)]
    assert missing == []


def test_a_result_is_a_table_for_people_and_json_with_json():
    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    def show(as_json):
        output.result({"status": "committed", "seconds": 0.14, "plaintext_size": 1500, "created_at": 0})

    human = CliRunner().invoke(show, [], env={"TZ": "UTC"})
    assert "0.14 s" in human.stdout and "1.50 kB" in human.stdout and "committed" in human.stdout
    assert json.loads(CliRunner().invoke(show, ["--json"]).stdout)["seconds"] == 0.14


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_progress_off_a_terminal_is_plain_lines_with_total_percentage_rate_and_eta(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(output.time, "monotonic", clock)
    stream = io.StringIO()
    with output.Progress("backup site", total=40_000_000, stream=stream, every=2.0) as progress:
        clock.now += 2.0
        progress.update(10_000_000, step="dump")
        clock.now += 1.0
        progress.update(15_000_000)            # within 2 s of the last line: not printed
        clock.now += 1.0
        progress.update(20_000_000)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "backup site: dump: 10.0 MB of 40.0 MB (25%) at 5.00 MB/s, ETA 6.0 s, 2.0 s elapsed"
    assert lines[1] == "backup site: dump: 20.0 MB of 40.0 MB (50%) at 5.00 MB/s, ETA 4.0 s, 4.0 s elapsed"
    assert len(lines) == 3 and "\x1b" not in stream.getvalue()   # the last at the end; no escape codes


def test_progress_without_a_total_shows_what_it_knows(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(output.time, "monotonic", clock)
    stream = io.StringIO()
    with output.Progress("drill", unit="datasets", stream=stream, every=0) as progress:
        clock.now += 125
        progress.update(3)
    assert stream.getvalue().splitlines()[0] == "drill: 3 datasets at 0.0/s, 2 m 05 s elapsed"


def test_one_line_outcomes_are_json_with_json():
    from pathlib import Path
    plan = Path(__file__).resolve().parents[2] / "examples" / "plugspace.yaml"
    doc = json.loads(CliRunner().invoke(main, ["plan", "check", str(plan), "--json"]).stdout)
    assert doc["ok"] is True and doc["plan"] == "plugspace" and doc["datasets"] == 6
    assert "ok — plan 'plugspace'" in CliRunner().invoke(main, ["plan", "check", str(plan)]).stdout
