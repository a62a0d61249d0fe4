from datetime import datetime, timezone

import pytest

from drfleet.plan.cron import Cron, CronError
from drfleet.plan.retention import parse_retention
from drfleet.plan.triggers import parse_trigger

UTC = timezone.utc


@pytest.mark.parametrize("text,cron", [
    ("hourly", "0 * * * *"), ("Daily", "0 0 * * *"), ("daily at 02:00", "0 2 * * *"),
    ("daily at 2 am", "0 2 * * *"), ("weekly", "0 0 * * 0"),
    ("weekly on sunday at 03:00", "0 3 * * 0"), ("Weekly (Sunday 3 AM)", "0 3 * * 0"),
    ("monthly", "0 0 1 * *"), ("quarterly", "0 0 1 1,4,7,10 *"), ("bi-annually", "0 0 1 1,7 *"),
    ("every 6 hours", "0 */6 * * *"), ("every 15 minutes", "*/15 * * * *"),
    ("0 3 * * 0", "0 3 * * 0"), ("*/5 1-3 * * mon-fri", "*/5 1-3 * * mon-fri"),
])
def test_cron_phrases(text, cron):
    trigger = parse_trigger(text)
    assert (trigger.kind, trigger.cron) == ("cron", cron)


@pytest.mark.parametrize("text,kind,event", [
    ("continuous", "continuous", None), ("Real-time", "continuous", None),
    ("on change", "on-change", None), ("on-event: deployment", "on-event", "deployment"),
    ("On deployment", "on-event", "deployment"),
])
def test_event_triggers(text, kind, event):
    trigger = parse_trigger(text)
    assert (trigger.kind, trigger.event, trigger.cron) == (kind, event, None)


@pytest.mark.parametrize("text,needle", [
    ("every 7 hours", "divide 24"), ("fortnightly", "not understood"), ("0 24 * * *", "hour field"),
    ("0 0 1 * 1", "both day-of-month and day-of-week"), ("* * *", "3 fields"),
    ("hourly at 03:00", "no time of day"),
])
def test_bad_triggers_say_what_is_wrong(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_trigger(text)


def test_interval_slots_are_aligned_and_enumerable():
    trigger = parse_trigger("every 10 seconds")
    assert trigger.kind == "interval"
    at = datetime(2026, 11, 21, 12, 0, 37, tzinfo=UTC)
    assert trigger.slot_for(at) == datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)
    slots = trigger.fires_between(datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC), at)
    assert [s.second for s in slots] == [10, 20, 30]


def test_cron_prev_and_next_fire():
    cron = Cron.parse("0 3 * * 0")  # Sundays 03:00
    at = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday
    assert cron.prev_fire(at) == datetime(2026, 11, 15, 3, 0, tzinfo=UTC)
    assert cron.next_fire(at) == datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    fires = list(Cron.parse("0 */6 * * *").fires_between(datetime(2026, 1, 1, tzinfo=UTC),
                                                          datetime(2026, 1, 2, tzinfo=UTC)))
    assert [f.hour for f in fires] == [6, 12, 18, 0]


def test_cron_rejects_out_of_range_and_backwards_ranges():
    with pytest.raises(CronError, match="minute field"):
        Cron.parse("60 * * * *")
    with pytest.raises(CronError, match="backwards"):
        Cron.parse("0 5-1 * * *")


@pytest.mark.parametrize("text,seconds,versions", [
    ("24 hours", 86400, None), ("7 days", 604800, None), ("4 weeks", 2419200, None),
    ("10 versions", None, 10), ("all versions", None, None), ("forever", None, None),
    ("Indefinite", None, None),
])
def test_retention(text, seconds, versions):
    keep = parse_retention(text)
    assert (keep.keep_seconds, keep.keep_versions) == (seconds, versions)


@pytest.mark.parametrize("text", ["-1 days", "0 versions", "a while"])
def test_bad_retention(text):
    with pytest.raises(ValueError):
        parse_retention(text)
