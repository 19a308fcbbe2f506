"""EventBridge schedule expressions (invocations/sources/schedule.py): pure functions, no database or Redis.

Expected fire times are worked out by hand from the calendar: 2026-05-13 is a Wednesday, 2026-05-01 a
Friday, 2026-06-01 a Monday; New York changes to EDT on 2026-03-08 and back to EST on 2026-11-01.
"""

import random
from datetime import datetime, timedelta, timezone

import pytest

from invocations.sources.schedule import (
    Expression, ScheduleExpressionError, parse, upcoming, validate_timezone,
)

UTC = timezone.utc
NEW_YORK = "America/New_York"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def nxt(expression, after, tz_name="UTC", anchor=None):
    return parse(expression).next_after(after, tz_name, anchor)


WEDNESDAY = utc(2026, 5, 13, 9, 30)


# ---- the examples from the AWS documentation ----

@pytest.mark.parametrize("expression, after, expected", [
    # 10:00 UTC every day; strictly after, so a fire time itself is not returned again.
    ("cron(0 10 * * ? *)", WEDNESDAY, utc(2026, 5, 13, 10, 0)),
    ("cron(0 10 * * ? *)", utc(2026, 5, 13, 10, 0), utc(2026, 5, 14, 10, 0)),
    # 12:15 UTC every day.
    ("cron(15 12 * * ? *)", WEDNESDAY, utc(2026, 5, 13, 12, 15)),
    ("cron(15 12 * * ? *)", utc(2026, 5, 13, 12, 15, 1), utc(2026, 5, 14, 12, 15)),
    # 18:00 UTC Monday to Friday: Friday evening's run is followed by Monday's.
    ("cron(0 18 ? * MON-FRI *)", WEDNESDAY, utc(2026, 5, 13, 18, 0)),
    ("cron(0 18 ? * MON-FRI *)", utc(2026, 5, 15, 18, 0), utc(2026, 5, 18, 18, 0)),
    # 08:00 UTC on the first day of each month.
    ("cron(0 8 1 * ? *)", WEDNESDAY, utc(2026, 6, 1, 8, 0)),
    ("cron(0 8 1 * ? *)", utc(2026, 12, 1, 8, 0), utc(2027, 1, 1, 8, 0)),
    # Every 15 minutes.
    ("cron(0/15 * * * ? *)", WEDNESDAY, utc(2026, 5, 13, 9, 45)),
    ("cron(0/15 * * * ? *)", utc(2026, 5, 13, 9, 50), utc(2026, 5, 13, 10, 0)),
    # Every 10 minutes Monday to Friday: late Friday goes on to Monday midnight.
    ("cron(0/10 * ? * MON-FRI *)", utc(2026, 5, 13, 9, 31), utc(2026, 5, 13, 9, 40)),
    ("cron(0/10 * ? * MON-FRI *)", utc(2026, 5, 15, 23, 55), utc(2026, 5, 18, 0, 0)),
    # Every 5 minutes between 08:00 and 17:55 UTC, Monday to Friday.
    ("cron(0/5 8-17 ? * MON-FRI *)", WEDNESDAY, utc(2026, 5, 13, 9, 35)),
    ("cron(0/5 8-17 ? * MON-FRI *)", utc(2026, 5, 13, 17, 55), utc(2026, 5, 14, 8, 0)),
    ("cron(0/5 8-17 ? * MON-FRI *)", utc(2026, 5, 15, 17, 56), utc(2026, 5, 18, 8, 0)),
    ("cron(0/5 8-17 ? * MON-FRI *)", utc(2026, 5, 16, 9, 0), utc(2026, 5, 18, 8, 0)),  # Saturday
    # 09:00 UTC on the first Monday of each month (2 = Monday in AWS).
    ("cron(0 9 ? * 2#1 *)", WEDNESDAY, utc(2026, 6, 1, 9, 0)),
    # Noon UTC every day.
    ("cron(0 12 * * ? *)", utc(2026, 5, 13, 12, 0), utc(2026, 5, 14, 12, 0)),
    ("cron(0 12 * * ? *)", utc(2026, 5, 13, 11, 59, 59, 999999), utc(2026, 5, 13, 12, 0)),
])
def test_aws_cron_examples(expression, after, expected):
    fire = nxt(expression, after)
    assert fire == expected
    assert fire.tzinfo == UTC


def test_first_monday_of_each_month():
    assert upcoming("cron(0 9 ? * 2#1 *)", after=WEDNESDAY, count=3) == [
        utc(2026, 6, 1, 9), utc(2026, 7, 6, 9), utc(2026, 8, 3, 9)]


@pytest.mark.parametrize("expression, expected", [
    ("rate(5 minutes)", [utc(2026, 5, 13, 9, 35), utc(2026, 5, 13, 9, 40), utc(2026, 5, 13, 9, 45)]),
    ("rate(1 hour)", [utc(2026, 5, 13, 10, 30), utc(2026, 5, 13, 11, 30), utc(2026, 5, 13, 12, 30)]),
    ("rate(7 days)", [utc(2026, 5, 20, 9, 30), utc(2026, 5, 27, 9, 30), utc(2026, 6, 3, 9, 30)]),
    ("rate(1 minute)", [utc(2026, 5, 13, 9, 31), utc(2026, 5, 13, 9, 32), utc(2026, 5, 13, 9, 33)]),
    ("rate(2 hours)", [utc(2026, 5, 13, 11, 30), utc(2026, 5, 13, 13, 30), utc(2026, 5, 13, 15, 30)]),
    ("rate(1 day)", [utc(2026, 5, 14, 9, 30), utc(2026, 5, 15, 9, 30), utc(2026, 5, 16, 9, 30)]),
])
def test_aws_rate_examples(expression, expected):
    # The anchor defaults to `after`: a new schedule first fires one interval after it is created.
    assert upcoming(expression, after=WEDNESDAY, count=3) == expected


# ---- rate() anchoring ----

def test_rate_fires_on_the_anchor_grid():
    anchor = utc(2026, 5, 13, 10, 0, 30)
    assert nxt("rate(5 minutes)", utc(2026, 5, 13, 10, 7), anchor=anchor) == utc(2026, 5, 13, 10, 10, 30)
    # Strictly after: a fire time itself gives the next one.
    assert nxt("rate(5 minutes)", utc(2026, 5, 13, 10, 10, 30), anchor=anchor) == utc(2026, 5, 13, 10, 15, 30)
    assert nxt("rate(5 minutes)", utc(2026, 5, 13, 10, 10, 29), anchor=anchor) == utc(2026, 5, 13, 10, 10, 30)
    # Long after creation the grid still holds.
    assert nxt("rate(1 hour)", utc(2026, 6, 1, 0, 0), anchor=anchor) == utc(2026, 6, 1, 0, 0, 30)


def test_rate_does_not_fire_at_or_before_creation():
    anchor = utc(2026, 5, 13, 10, 0, 30)
    assert nxt("rate(5 minutes)", anchor, anchor=anchor) == utc(2026, 5, 13, 10, 5, 30)
    assert nxt("rate(5 minutes)", utc(2026, 5, 13, 9, 0), anchor=anchor) == utc(2026, 5, 13, 10, 5, 30)


def test_rate_ignores_time_zone_and_counts_real_time_across_dst():
    # Created at noon New York time (EST, 17:00 UTC) the day before clocks go forward: "1 day" stays
    # 24 real hours, so from the change on it fires at 13:00 EDT = 17:00 UTC.
    anchor = datetime(2026, 3, 7, 12, 0, tzinfo=validate_timezone(NEW_YORK))
    after = datetime(2026, 3, 8, 12, 30, tzinfo=validate_timezone(NEW_YORK))
    # (Wall-clock arithmetic would give 12:00 EDT = 16:00 UTC, before `after`.)
    assert nxt("rate(1 day)", after, NEW_YORK, anchor) == utc(2026, 3, 8, 17, 0)
    assert nxt("rate(1 day)", after, "UTC", anchor) == utc(2026, 3, 8, 17, 0)
    times = upcoming("rate(1 day)", NEW_YORK, after=after, anchor=anchor, count=2)
    assert [t.isoformat() for t in times] == ["2026-03-08T13:00:00-04:00", "2026-03-09T13:00:00-04:00"]


def test_rate_with_anchor_and_after_in_different_zones():
    anchor = datetime(2026, 5, 13, 6, 0, 30, tzinfo=validate_timezone(NEW_YORK))  # 10:00:30 UTC
    after = datetime(2026, 5, 13, 12, 7, tzinfo=validate_timezone("Europe/Paris"))  # 10:07 UTC
    assert nxt("rate(5 minutes)", after, anchor=anchor) == utc(2026, 5, 13, 10, 10, 30)


# ---- time zones and DST (croniter's behaviour, asserted as such) ----

def test_cron_is_evaluated_in_the_time_zone():
    # 09:00 New York is 14:00 UTC in winter (EST) and 13:00 UTC in summer (EDT).
    assert nxt("cron(0 9 * * ? *)", utc(2026, 3, 7, 0, 0), NEW_YORK) == utc(2026, 3, 7, 14, 0)
    assert nxt("cron(0 9 * * ? *)", utc(2026, 3, 9, 0, 0), NEW_YORK) == utc(2026, 3, 9, 13, 0)
    # Days are New York days: 23:00 on Friday there is already Saturday in UTC.
    assert nxt("cron(0 23 ? * FRI *)", WEDNESDAY, NEW_YORK) == utc(2026, 5, 16, 3, 0)


def test_spring_forward_skipped_time_fires_at_the_first_valid_time():
    # 2026-03-08 02:30 does not exist in New York (02:00 EST jumps to 03:00 EDT). croniter fires at
    # 03:00 EDT (07:00 UTC) instead, then goes back to 02:30 on the following days.
    times = upcoming("cron(30 2 * * ? *)", NEW_YORK, after=utc(2026, 3, 7, 17, 0), count=3)
    assert [t.isoformat() for t in times] == [
        "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    assert times[0] == utc(2026, 3, 8, 7, 0)
    # The day before, 02:30 EST is 07:30 UTC.
    assert nxt("cron(30 2 * * ? *)", utc(2026, 3, 7, 0, 0), NEW_YORK) == utc(2026, 3, 7, 7, 30)


def test_fall_back_repeated_time_fires_twice():
    # 2026-11-01 01:30 happens twice in New York; croniter fires on both (05:30 and 06:30 UTC).
    times = upcoming("cron(30 1 * * ? *)", NEW_YORK, after=utc(2026, 10, 31, 12, 0), count=3)
    assert [t.isoformat() for t in times] == [
        "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-02T01:30:00-05:00"]
    assert [t.astimezone(UTC) for t in times] == [
        utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30), utc(2026, 11, 2, 6, 30)]


def test_frequent_cron_across_spring_forward_keeps_going():
    times = upcoming("cron(0/30 * * * ? *)", NEW_YORK, after=utc(2026, 3, 8, 6, 0), count=3)  # 01:00 EST
    assert [t.isoformat() for t in times] == [
        "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]


# ---- the year field ----

def test_year_in_the_future_jumps_ahead():
    assert nxt("cron(0 10 * * ? 2027)", WEDNESDAY) == utc(2027, 1, 1, 10, 0)
    assert nxt("cron(0 10 ? * 2#1 2027)", WEDNESDAY) == utc(2027, 1, 4, 10, 0)  # first Monday of 2027


def test_year_in_the_past_never_fires():
    assert nxt("cron(0 10 * * ? 2020)", WEDNESDAY) is None
    assert upcoming("cron(0 10 * * ? 2020)", after=WEDNESDAY) == []


def test_schedule_ends_after_its_last_year():
    assert upcoming("cron(0 10 30 12 ? 2026)", after=WEDNESDAY) == [utc(2026, 12, 30, 10, 0)]
    assert nxt("cron(0 10 31 12 ? 2026)", utc(2026, 12, 31, 10, 0)) is None


def test_year_list_range_and_step():
    new_years_eve = utc(2026, 12, 31, 11, 0)
    assert nxt("cron(0 10 * * ? 2026,2028)", new_years_eve) == utc(2028, 1, 1, 10, 0)
    assert upcoming("cron(0 10 1 1 ? 2026-2030/2)", after=utc(2026, 1, 1, 0, 0)) == [
        utc(2026, 1, 1, 10), utc(2028, 1, 1, 10), utc(2030, 1, 1, 10)]
    assert upcoming("cron(0 10 1 1 ? 2027-2029)", after=WEDNESDAY) == [
        utc(2027, 1, 1, 10), utc(2028, 1, 1, 10), utc(2029, 1, 1, 10)]
    assert nxt("cron(0 10 1 1 ? 2026/3)", WEDNESDAY) == utc(2029, 1, 1, 10)
    assert nxt("cron(0 10 * * ? *)", utc(2199, 12, 31, 11)) == utc(2200, 1, 1, 10)  # * is any year


def test_year_is_the_local_year_and_midnight_on_new_year_is_kept():
    # Midnight on 2027-01-01 in New York is 05:00 UTC; in UTC terms 2026 still has hours to go.
    assert nxt("cron(0 0 1 1 ? 2027)", WEDNESDAY, NEW_YORK) == utc(2027, 1, 1, 5, 0)
    assert nxt("cron(0 0 * * ? 2027)", WEDNESDAY) == utc(2027, 1, 1, 0, 0)
    # 23:00 New York on 2026-12-31 is already 2027 in UTC, but 2026 locally: excluded.
    assert nxt("cron(0 23 31 12 ? 2027)", WEDNESDAY, NEW_YORK) == utc(2028, 1, 1, 4, 0)


def test_year_never_matching_day_returns_none():
    # 2027 has no 29 February; croniter finds 2028, which the year field rules out.
    assert nxt("cron(0 10 29 2 ? 2027)", WEDNESDAY) is None


def test_impossible_date_never_fires():
    assert nxt("cron(0 0 30 2 ? *)", WEDNESDAY) is None
    assert upcoming("cron(0 0 31 4 ? *)", after=WEDNESDAY) == []


# ---- day-of-week: 1 = Sunday ----

@pytest.mark.parametrize("dow, expected", [
    ("1", utc(2026, 5, 17, 10)),     # Sunday
    ("SUN", utc(2026, 5, 17, 10)),
    ("2", utc(2026, 5, 18, 10)),     # Monday
    ("4", utc(2026, 5, 13, 10)),     # Wednesday: today
    ("WED", utc(2026, 5, 13, 10)),
    ("wed", utc(2026, 5, 13, 10)),
    ("5", utc(2026, 5, 14, 10)),     # Thursday
    ("7", utc(2026, 5, 16, 10)),     # Saturday
    ("SAT", utc(2026, 5, 16, 10)),
    ("L", utc(2026, 5, 16, 10)),     # L alone: the last day of the week, Saturday
    ("6#3", utc(2026, 5, 15, 10)),   # third Friday of May 2026
    ("FRI#3", utc(2026, 5, 15, 10)),
    ("1#5", utc(2026, 5, 31, 10)),   # fifth Sunday
    ("6L", utc(2026, 5, 29, 10)),    # last Friday
    ("2L", utc(2026, 5, 25, 10)),    # last Monday
    ("1,7", utc(2026, 5, 16, 10)),   # weekends
    ("7,1", utc(2026, 5, 16, 10)),
    ("SAT-SAT", utc(2026, 5, 16, 10)),
])
def test_day_of_week_numbers_start_at_sunday(dow, expected):
    assert nxt(f"cron(0 10 ? * {dow} *)", WEDNESDAY) == expected


@pytest.mark.parametrize("dow, expected_days", [
    ("1-7/2", [14, 16, 17, 19]),         # Sun, Tue, Thu, Sat
    ("*/2", [14, 16, 17, 19]),
    ("2-6/2", [13, 15, 18, 20]),         # Mon, Wed, Fri
    ("MON-FRI", [13, 14, 15, 18]),
    ("2-6", [13, 14, 15, 18]),
    ("2/3", [14, 18, 21, 25]),           # Mon, Thu (2, 5; 8 is out of range)
    ("*", [13, 14, 15, 16]),
])
def test_day_of_week_ranges_and_steps(dow, expected_days):
    assert upcoming(f"cron(0 10 ? * {dow} *)", after=WEDNESDAY, count=4) == [
        utc(2026, 5, d, 10) for d in expected_days]


def test_several_nth_days_of_week():
    # First Sunday and second Monday of each month: Jun 7, Jun 8, Jul 5, Jul 13.
    assert upcoming("cron(0 10 ? * 1#1,2#2 *)", after=WEDNESDAY, count=4) == [
        utc(2026, 6, 7, 10), utc(2026, 6, 8, 10), utc(2026, 7, 5, 10), utc(2026, 7, 13, 10)]


def test_last_friday_over_several_months():
    assert upcoming("cron(0 10 ? * 6L *)", after=WEDNESDAY, count=3) == [
        utc(2026, 5, 29, 10), utc(2026, 6, 26, 10), utc(2026, 7, 31, 10)]


# ---- day-of-month, month ----

MAY_FIRST = utc(2026, 5, 1, 0, 0)


@pytest.mark.parametrize("dom, expected", [
    ("L", utc(2026, 5, 31, 10)),
    ("15W", utc(2026, 5, 15, 10)),   # Friday: itself
    ("16W", utc(2026, 5, 15, 10)),   # Saturday: the Friday before
    ("17W", utc(2026, 5, 18, 10)),   # Sunday: the Monday after
    ("1,L", utc(2026, 5, 1, 10)),
    ("10-12", utc(2026, 5, 10, 10)),
    ("5/10", utc(2026, 5, 5, 10)),
    ("*", utc(2026, 5, 1, 10)),
])
def test_day_of_month(dom, expected):
    assert nxt(f"cron(0 10 {dom} * ? *)", MAY_FIRST) == expected


def test_last_day_of_month():
    assert upcoming("cron(0 10 L * ? *)", after=utc(2028, 1, 31, 11), count=2) == [
        utc(2028, 2, 29, 10), utc(2028, 3, 31, 10)]


def test_day_of_month_steps():
    assert upcoming("cron(0 10 5/10 * ? *)", after=MAY_FIRST, count=4) == [
        utc(2026, 5, 5, 10), utc(2026, 5, 15, 10), utc(2026, 5, 25, 10), utc(2026, 6, 5, 10)]


@pytest.mark.parametrize("month", ["1-3", "JAN-MAR", "jan-mar", "JAN,FEB,MAR", "1,FEB,3", "*/12,2-3"])
def test_month_names_and_numbers(month):
    assert upcoming(f"cron(0 10 1 {month} ? *)", after=WEDNESDAY, count=3) == [
        utc(2027, 1, 1, 10), utc(2027, 2, 1, 10), utc(2027, 3, 1, 10)]


def test_minute_and_hour_lists_ranges_and_steps():
    assert upcoming("cron(5,20-21,50/5 22/1 * * ? *)", after=utc(2026, 5, 13, 22, 18), count=7) == [
        utc(2026, 5, 13, 22, 20), utc(2026, 5, 13, 22, 21), utc(2026, 5, 13, 22, 50),
        utc(2026, 5, 13, 22, 55), utc(2026, 5, 13, 23, 5), utc(2026, 5, 13, 23, 20), utc(2026, 5, 13, 23, 21)]


def test_extra_whitespace_is_accepted():
    assert nxt("  cron( 0  10 *\t* ? * ) ", WEDNESDAY) == utc(2026, 5, 13, 10)
    assert nxt(" rate( 5  minutes ) ", WEDNESDAY) == utc(2026, 5, 13, 9, 35)


# ---- upcoming() and the API surface ----

def test_upcoming_defaults_to_now_and_five_times():
    before = datetime.now(UTC)
    times = upcoming("cron(0/5 * * * ? *)")
    assert len(times) == 5
    assert times[0] > before
    assert times[0] - before <= timedelta(minutes=5)
    assert all(b - a == timedelta(minutes=5) for a, b in zip(times, times[1:]))


def test_upcoming_is_in_the_display_zone():
    times = upcoming("cron(0 9 * * ? *)", NEW_YORK, after=WEDNESDAY, count=2)
    assert [t.isoformat() for t in times] == ["2026-05-13T09:00:00-04:00", "2026-05-14T09:00:00-04:00"]
    assert times[0].tzinfo == validate_timezone(NEW_YORK)


def test_upcoming_accepts_a_parsed_expression_and_a_count():
    expression = parse("rate(1 hour)")
    assert isinstance(expression, Expression)
    assert str(expression) == "rate(1 hour)"
    assert upcoming(expression, after=WEDNESDAY, count=1) == [utc(2026, 5, 13, 10, 30)]
    assert upcoming(expression, after=WEDNESDAY, count=0) == []


def test_next_after_needs_an_aware_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("cron(0 10 * * ? *)").next_after(datetime(2026, 5, 13, 9, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("rate(5 minutes)").next_after(WEDNESDAY, anchor=datetime(2026, 5, 13, 9, 30))


def test_validate_timezone():
    assert str(validate_timezone("Europe/Paris")) == "Europe/Paris"
    assert str(validate_timezone("UTC")) == "UTC"


@pytest.mark.parametrize("name", ["Mars/Base", "", "../../etc/passwd", "/etc/localtime", None, 5])
def test_unknown_time_zone(name):
    with pytest.raises(ScheduleExpressionError) as raised:
        validate_timezone(name)
    assert str(raised.value) == f"Unknown time zone {name!r}"


def test_unknown_time_zone_in_upcoming_and_next_after():
    with pytest.raises(ScheduleExpressionError, match="^Unknown time zone 'Mars/Base'$"):
        upcoming("rate(5 minutes)", "Mars/Base")
    with pytest.raises(ScheduleExpressionError, match="^Unknown time zone 'Mars/Base'$"):
        parse("cron(0 10 * * ? *)").next_after(WEDNESDAY, "Mars/Base")


# ---- rejections: every message is checked ----

@pytest.mark.parametrize("expression, message", [
    # Not an expression at all.
    ("", "Enter a schedule expression, e.g. rate(5 minutes) or cron(0 10 * * ? *)"),
    ("   ", "Enter a schedule expression, e.g. rate(5 minutes) or cron(0 10 * * ? *)"),
    (None, "Enter a schedule expression, e.g. rate(5 minutes) or cron(0 10 * * ? *)"),
    ("at(2026-05-13T10:00:00)", "One-time at() schedules are not supported; use rate() or cron()"),
    ("every 5 minutes", "A schedule must be rate(value unit) or cron(minutes hours day-of-month month "
                        "day-of-week year), not 'every 5 minutes'"),
    ("0 10 * * ? *", "A schedule must be rate(value unit) or cron(minutes hours day-of-month month "
                     "day-of-week year), not '0 10 * * ? *'"),
    ("RATE(5 minutes)", "A schedule must be rate(value unit) or cron(minutes hours day-of-month month "
                        "day-of-week year), not 'RATE(5 minutes)'"),
    ("rate(5 minutes", "A schedule must be rate(value unit) or cron(minutes hours day-of-month month "
                       "day-of-week year), not 'rate(5 minutes'"),
    # rate()
    ("rate(1 minutes)", "rate(1 minutes): use the singular unit 'minute' for a value of 1"),
    ("rate(1 hours)", "rate(1 hours): use the singular unit 'hour' for a value of 1"),
    ("rate(1 days)", "rate(1 days): use the singular unit 'day' for a value of 1"),
    ("rate(5 minute)", "rate(5 minute): use the plural unit 'minutes' for a value greater than 1"),
    ("rate(2 day)", "rate(2 day): use the plural unit 'days' for a value greater than 1"),
    ("rate(0 minutes)", "rate() value must be a positive whole number, not '0'"),
    ("rate(-5 minutes)", "rate() value must be a positive whole number, not '-5'"),
    ("rate(1.5 hours)", "rate() value must be a positive whole number, not '1.5'"),
    ("rate(five minutes)", "rate() value must be a positive whole number, not 'five'"),
    ("rate(30 seconds)", "rate() can't be finer than 1 minute; seconds are not supported"),
    ("rate(1 second)", "rate() can't be finer than 1 minute; seconds are not supported"),
    ("rate(2 weeks)", "Unknown rate unit 'weeks': use minute(s), hour(s) or day(s)"),
    ("rate(5 Minutes)", "Unknown rate unit 'Minutes': use minute(s), hour(s) or day(s)"),
    ("rate(5)", "rate() needs a value and a unit, e.g. rate(5 minutes)"),
    ("rate()", "rate() needs a value and a unit, e.g. rate(5 minutes)"),
    ("rate(5 minutes now)", "rate() needs a value and a unit, e.g. rate(5 minutes)"),
    ("rate(999999999999 days)", "rate() value 999999999999 is too large"),
    # cron(): shape and ?
    ("cron(0 10 * * ?)", "cron() needs six fields: minutes hours day-of-month month day-of-week year (got 5)"),
    ("cron(0 10 * * ? * *)", "cron() needs six fields: minutes hours day-of-month month day-of-week year (got 7)"),
    ("cron()", "cron() needs six fields: minutes hours day-of-month month day-of-week year (got 0)"),
    ("cron(0 10 * * * *)", "Use ? in either day-of-month or day-of-week: AWS doesn't allow values in both"),
    ("cron(0 10 1 * MON *)", "Use ? in either day-of-month or day-of-week: AWS doesn't allow values in both"),
    ("cron(0 10 ? * ? *)", "Use ? in only one of day-of-month and day-of-week, not both"),
    ("cron(? 10 * * ? *)", "Minutes can't be ?: use ? only in day-of-month or day-of-week"),
    ("cron(0 ? * * ? *)", "Hours can't be ?: use ? only in day-of-month or day-of-week"),
    ("cron(0 10 * ? ? *)", "Month can't be ?: use ? only in day-of-month or day-of-week"),
    ("cron(0 10 * * ? ?)", "Year can't be ?: use ? only in day-of-month or day-of-week"),
    ("cron(0 10 1,? * ? *)", "Day-of-month: ? must stand alone"),
    ("cron(0 10 * * ?,1 *)", "Day-of-week: ? must stand alone"),
    # cron(): values out of range or not values
    ("cron(61 10 * * ? *)", "Minutes must be 0–59, not 61"),
    ("cron(60 10 * * ? *)", "Minutes must be 0–59, not 60"),
    ("cron(0-61 10 * * ? *)", "Minutes must be 0–59, not 61"),
    ("cron(x 10 * * ? *)", "Minutes must be 0–59, not x"),
    ("cron(L 10 * * ? *)", "Minutes must be 0–59, not L"),
    ("cron(-1 10 * * ? *)", "Minutes is missing a value in '-1'"),
    ("cron(0 24 * * ? *)", "Hours must be 0–23, not 24"),
    ("cron(0 10 32 * ? *)", "Day-of-month must be 1–31, not 32"),
    ("cron(0 10 0 * ? *)", "Day-of-month must be 1–31, not 0"),
    ("cron(0 10 MON * ? *)", "Day-of-month must be 1–31, not MON"),
    ("cron(0 10 * 13 ? *)", "Month must be 1–12 or JAN–DEC, not 13"),
    ("cron(0 10 * 0 ? *)", "Month must be 1–12 or JAN–DEC, not 0"),
    ("cron(0 10 * FOO ? *)", "Month must be 1–12 or JAN–DEC, not FOO"),
    ("cron(0 10 * JANUARY ? *)", "Month must be 1–12 or JAN–DEC, not JANUARY"),
    ("cron(0 10 ? * 8 *)", "Day-of-week must be 1–7 or SUN–SAT, not 8"),
    ("cron(0 10 ? * 0 *)", "Day-of-week must be 1–7 or SUN–SAT, not 0"),
    ("cron(0 10 ? * MON-8 *)", "Day-of-week must be 1–7 or SUN–SAT, not 8"),
    ("cron(0 10 ? * MONDAY *)", "Day-of-week must be 1–7 or SUN–SAT, not MONDAY"),
    ("cron(0 10 ? * MON- *)", "Day-of-week is missing a value in 'MON-'"),
    ("cron(0 10 * * ? 1900)", "Year must be 1970–2199, not 1900"),
    ("cron(0 10 * * ? 2200)", "Year must be 1970–2199, not 2200"),
    ("cron(0 10 * * ? 26)", "Year must be 1970–2199, not 26"),
    ("cron(0 10 * * ? 2026-)", "Year is missing a value in '2026-'"),
    # cron(): lists, ranges, steps
    ("cron(0/0 * * * ? *)", "Minutes step must be a positive whole number, not '0'"),
    ("cron(*/x * * * ? *)", "Minutes step must be a positive whole number, not 'x'"),
    ("cron(0/ * * * ? *)", "Minutes step must be a positive whole number, not ''"),
    ("cron(0 17-9 * * ? *)", "Hours range 17-9 must go from low to high"),
    ("cron(0 10 ? * FRI-MON *)", "Day-of-week range FRI-MON must go from low to high"),
    ("cron(0 10 * * ? 2030-2026)", "Year range 2030-2026 must go from low to high"),
    ("cron(0 10 1,,2 * ? *)", "Day-of-month has an empty value in '1,,2'"),
    ("cron(0, 10 * * ? *)", "Minutes has an empty value in '0,'"),
    # cron(): L, W and #
    ("cron(0 10 LW * ? *)", "Day-of-month LW (last weekday of the month) is not supported"),
    ("cron(0 10 1,15W * ? *)", "Day-of-month: W must stand alone, e.g. 15W"),
    ("cron(0 10 32W * ? *)", "Day-of-month must be 1–31, not 32"),
    ("cron(0 10 W * ? *)", "Day-of-month is missing a value in 'W'"),
    ("cron(0 10 L-2 * ? *)", "Day-of-month must be 1–31, not L"),
    ("cron(0 10 ? * 2#6 *)", "Day-of-week # must be 1–5 (the nth such day of the month), not 6"),
    ("cron(0 10 ? * 2#0 *)", "Day-of-week # must be 1–5 (the nth such day of the month), not 0"),
    ("cron(0 10 ? * 8#1 *)", "Day-of-week must be 1–7 or SUN–SAT, not 8"),
    ("cron(0 10 ? * 2#1,3 *)", "Day-of-week can't combine # or L with plain days"),
    ("cron(0 10 ? * 6L,MON *)", "Day-of-week can't combine # or L with plain days"),
    ("cron(0 10 ? * 9L *)", "Day-of-week must be 1–7 or SUN–SAT, not 9"),
    ("cron(0 10 ? * 15W *)", "Day-of-week must be 1–7 or SUN–SAT, not 15W"),
])
def test_rejections(expression, message):
    with pytest.raises(ScheduleExpressionError) as raised:
        parse(expression)
    assert str(raised.value) == message


def test_error_is_a_value_error():
    assert issubclass(ScheduleExpressionError, ValueError)


def test_at_least_one_minute_between_rate_fires():
    # The smallest rate is one minute; cron's finest granularity is one minute as well.
    assert parse("rate(1 minute)").interval == timedelta(minutes=1)


def test_garbage_only_ever_raises_schedule_expression_error():
    """Random expressions: each one parses and evaluates, or raises ScheduleExpressionError, nothing else."""
    common = ["*", "0", "1", "5", "7", "*/5", "0/15", "1-5", "1,2", "5-1", "60", "2/0"]
    pools = [
        common + ["59", "0-59/7"],                                    # minutes
        common + ["23", "8-17", "22/1"],                              # hours
        common + ["31", "L", "1,L", "15W", "31W", "LW", "30", "L-2"],  # day-of-month
        common + ["12", "13", "JAN", "jan-mar", "FEB", "DEC/2"],      # month
        common + ["6L", "L", "2#1", "2#9", "1#5,7#1", "MON", "mon-fri", "SAT-SUN", "8", "L5"],  # day-of-week
        ["*", "2026", "2027", "2020", "2026-2030/2", "2199", "1969", "2026,2031", "*/3"],  # year
    ]
    garbage = ["?", "#", "-", "/", ",", "/5", "1-", "x", "W", "0#1", "1--2", "1/2/3", "١", "²", "L"]
    rng = random.Random(20260513)
    parsed_count = fired = 0
    for _ in range(3000):
        fields = [rng.choice(pool) for pool in pools]
        fields[rng.choice([2, 4])] = "?"
        if rng.random() < 0.2:
            fields[rng.randrange(6)] = rng.choice(garbage)
        expression = f"cron({' '.join(fields)})"
        try:
            parsed = parse(expression)
        except ScheduleExpressionError:
            continue
        parsed_count += 1
        fire = parsed.next_after(WEDNESDAY, NEW_YORK)
        assert fire is None or fire > WEDNESDAY, expression
        fired += fire is not None
    assert parsed_count > 400 and fired > 300  # evaluation really was exercised, not just rejection
