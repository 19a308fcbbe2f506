"""Amazon EventBridge schedule expressions: rate(value unit) and cron(six fields).

    expr = parse("cron(0 9 ? * 2#1 *)")               # first Monday of each month, 09:00
    expr.next_after(after, "Europe/Paris")             # next fire time (aware, UTC) or None
    upcoming("rate(5 minutes)", anchor=created_at)     # the next five fire times, for display

AWS's cron dialect differs from the classic Unix one that croniter reads, so Cron translates it:
day-of-week counts 1 = Sunday (croniter 0 = Sunday), `?` means "no value" (croniter: `*`), `nL`
means "last n-day of the month" (croniter: `L{n-1}`), and the sixth field is the year, which we filter
ourselves because croniter would read a sixth field as seconds. Every problem is reported as a
ScheduleExpressionError whose message can be shown as a form error.
"""

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = ["ScheduleExpressionError", "Expression", "Rate", "Cron", "parse", "upcoming", "validate_timezone"]

UTC = timezone.utc


class ScheduleExpressionError(ValueError):
    """An expression or time zone that can't be used; str(error) is a message for the user."""


def validate_timezone(tz_name):
    """Return the ZoneInfo for an IANA name such as "America/New_York", or raise ScheduleExpressionError."""
    try:
        return ZoneInfo(tz_name)
    # ValueError/TypeError: names such as "../etc" or "" or None, which ZoneInfo refuses before looking.
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleExpressionError(f"Unknown time zone {tz_name!r}") from None


def parse(expression):
    """Parse an EventBridge schedule expression into a Rate or Cron, or raise ScheduleExpressionError."""
    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleExpressionError("Enter a schedule expression, e.g. rate(5 minutes) or cron(0 10 * * ? *)")
    text = expression.strip()
    match = re.fullmatch(r"(\w+)\((.*)\)", text, re.DOTALL)
    kind = match and match.group(1)
    if kind == "rate":
        return Rate(text, match.group(2))
    if kind == "cron":
        return Cron(text, match.group(2))
    if kind == "at":
        raise ScheduleExpressionError("One-time at() schedules are not supported; use rate() or cron()")
    raise ScheduleExpressionError(
        f"A schedule must be rate(value unit) or cron(minutes hours day-of-month month day-of-week year), not {text!r}")


def upcoming(expression, tz_name="UTC", after=None, anchor=None, count=5):
    """The next `count` fire times strictly after `after` (default now), in tz_name's zone for display.

    Fewer are returned when the schedule ends (a cron limited to past years returns []).
    `anchor` is a rate() schedule's creation time and defaults to `after`.
    """
    expr = expression if isinstance(expression, Expression) else parse(expression)
    zone = validate_timezone(tz_name)
    after = datetime.now(UTC) if after is None else _aware(after, "after")
    anchor = after if anchor is None else anchor
    times = []
    while len(times) < count:
        after = expr.next_after(after, tz_name, anchor)
        if after is None:
            break
        times.append(after.astimezone(zone))
    return times


class Expression:
    """A parsed schedule expression; str() gives back its text."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"<{type(self).__name__} {self.text}>"

    def next_after(self, after, tz_name="UTC", anchor=None):
        """The first fire time strictly after the aware datetime `after`, as an aware UTC datetime, or None."""
        raise NotImplementedError


# ---- rate() ----

UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


class Rate(Expression):
    """rate(value unit): fires every `interval`, counted from the schedule's creation time (the anchor)."""

    def __init__(self, text, inside):
        super().__init__(text)
        parts = inside.split()
        if len(parts) != 2:
            raise ScheduleExpressionError("rate() needs a value and a unit, e.g. rate(5 minutes)")
        value, unit = parts
        if not re.fullmatch(r"[0-9]+", value) or int(value) == 0:
            raise ScheduleExpressionError(f"rate() value must be a positive whole number, not {value!r}")
        value = int(value)
        singular = unit[:-1] if unit.endswith("s") else unit
        if singular == "second":
            raise ScheduleExpressionError("rate() can't be finer than 1 minute; seconds are not supported")
        if singular not in UNITS:
            raise ScheduleExpressionError(f"Unknown rate unit {unit!r}: use minute(s), hour(s) or day(s)")
        # AWS rejects "rate(1 minutes)" and "rate(5 minute)", so we do too: the expression must work there.
        if value == 1 and unit != singular:
            raise ScheduleExpressionError(
                f"rate(1 {unit}): use the singular unit {singular!r} for a value of 1")
        if value > 1 and unit == singular:
            raise ScheduleExpressionError(
                f"rate({value} {unit}): use the plural unit {singular + 's'!r} for a value greater than 1")
        try:
            self.interval = value * UNITS[singular]
        except OverflowError:
            raise ScheduleExpressionError(f"rate() value {value} is too large") from None

    def next_after(self, after, tz_name="UTC", anchor=None):
        # Work in UTC: arithmetic on two datetimes sharing a ZoneInfo is wall-clock arithmetic, which
        # would shift fire times by an hour across a DST change. The time zone itself is irrelevant here.
        after = _aware(after, "after").astimezone(UTC)
        anchor = after if anchor is None else _aware(anchor, "anchor").astimezone(UTC)
        # Fire times are anchor + k * interval for k >= 1: nothing fires at the instant of creation.
        k = max((after - anchor) // self.interval + 1, 1)
        return anchor + k * self.interval


# ---- cron() ----

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]  # AWS numbers them 1-7


class Field:
    def __init__(self, label, low, high, names=None):
        self.label, self.low, self.high, self.names = label, low, high, names
        self.allowed = f"{low}–{high}" + (f" or {names[0]}–{names[-1]}" if names else "")

    def number(self, token, item):
        """A number or name (case-insensitive) within the field's range."""
        if token == "":
            raise ScheduleExpressionError(f"{self.label} is missing a value in {item!r}")
        if self.names and token.upper() in self.names:
            return self.names.index(token.upper()) + 1
        if not re.fullmatch(r"[0-9]+", token) or not self.low <= int(token) <= self.high:
            raise ScheduleExpressionError(f"{self.label} must be {self.allowed}, not {token}")
        return int(token)

    def values(self, item):
        """The set of values of one plain list item: *, */s, a, a-b, a/s, a-b/s."""
        spec, slash, step = item.partition("/")
        if slash:
            if not re.fullmatch(r"[0-9]+", step) or int(step) == 0:
                raise ScheduleExpressionError(f"{self.label} step must be a positive whole number, not {step!r}")
        step = int(step) if slash else 1
        if spec == "*":
            first, last = self.low, self.high
        else:
            start, dash, end = spec.partition("-")
            first = self.number(start, item)
            # "a/s" runs from a to the top of the field, as in AWS's "0/15" = 0,15,30,45.
            last = self.number(end, item) if dash else (self.high if slash else first)
            if last < first:
                raise ScheduleExpressionError(f"{self.label} range {spec} must go from low to high")
        return set(range(first, last + 1, step))


MINUTES = Field("Minutes", 0, 59)
HOURS = Field("Hours", 0, 23)
DAY_OF_MONTH = Field("Day-of-month", 1, 31)
MONTH = Field("Month", 1, 12, MONTHS)
DAY_OF_WEEK = Field("Day-of-week", 1, 7, DAYS)
YEAR = Field("Year", 1970, 2199)
FIELDS = [MINUTES, HOURS, DAY_OF_MONTH, MONTH, DAY_OF_WEEK, YEAR]


class Cron(Expression):
    """cron(minutes hours day-of-month month day-of-week year), evaluated in a given time zone."""

    def __init__(self, text, inside):
        super().__init__(text)
        fields = inside.split()
        if len(fields) != 6:
            raise ScheduleExpressionError(
                f"cron() needs six fields: minutes hours day-of-month month day-of-week year (got {len(fields)})")
        minutes, hours, dom, month, dow, year = fields
        for field, value in zip(FIELDS, fields):
            if "?" in value and field not in (DAY_OF_MONTH, DAY_OF_WEEK):
                raise ScheduleExpressionError(f"{field.label} can't be ?: use ? only in day-of-month or day-of-week")
            if "?" in value and value != "?":
                raise ScheduleExpressionError(f"{field.label}: ? must stand alone")
        # AWS: "If you specify a value (or a *) in one of the fields, you must use a ? in the other."
        if dom == "?" and dow == "?":
            raise ScheduleExpressionError("Use ? in only one of day-of-month and day-of-week, not both")
        if dom != "?" and dow != "?":
            raise ScheduleExpressionError(
                "Use ? in either day-of-month or day-of-week: AWS doesn't allow values in both")

        # The five fields croniter reads, in its own syntax. The other day field is "?", i.e. "*",
        # so croniter's OR-ing of day-of-month with day-of-week never comes into play.
        self._cron = " ".join([
            _plain(MINUTES, minutes), _plain(HOURS, hours), _day_of_month(dom), _plain(MONTH, month),
            _day_of_week(dow),
        ])
        # The allowed years, or None for any year.
        self._years = None if year == "*" else sorted(_union(YEAR, year))
        try:
            croniter(self._cron, datetime(2000, 1, 1, tzinfo=UTC))
        except (CroniterError, ValueError, KeyError) as e:  # anything our own checks let through
            raise ScheduleExpressionError(f"Unsupported cron expression {text!r} ({e})") from None

    def next_after(self, after, tz_name="UTC", anchor=None):
        zone = validate_timezone(tz_name)
        # croniter evaluates the fields in the base datetime's zone and handles DST itself: a time skipped
        # by the spring change fires at the first valid time after it (02:30 -> 03:00), and one repeated
        # by the autumn change fires on both passes (01:30 EDT and 01:30 EST). AWS documents "skipped"
        # and "once" instead; we accept croniter's behaviour.
        start = _aware(after, "after").astimezone(zone)
        while True:
            try:
                fire = croniter(self._cron, start).get_next(datetime)
            except CroniterBadDateError:  # the fields can never match, e.g. cron(0 0 30 2 ? *)
                return None
            if self._years is None or fire.year in self._years:
                return fire.astimezone(UTC)
            # Wrong year (the year is local to the zone): restart just before the next allowed year
            # rather than stepping through every fire time in between.
            later = [y for y in self._years if y > fire.year]
            if not later:
                return None
            start = datetime(later[0], 1, 1, tzinfo=zone) - timedelta(seconds=1)


def _plain(field, text):
    """A field with only numbers/names, ranges, steps and lists, as an explicit croniter list."""
    return "*" if text == "*" else ",".join(str(v) for v in sorted(_union(field, text)))


def _union(field, text):
    return set().union(*(field.values(item) for item in _items(field, text)))


def _items(field, text):
    items = text.split(",")
    if "" in items:
        raise ScheduleExpressionError(f"{field.label} has an empty value in {text!r}")
    return items


def _day_of_month(text):
    """Day-of-month adds L (last day) and nW (weekday nearest day n); croniter reads both as AWS does."""
    if text in ("?", "*"):
        return "*"
    if text.upper() == "LW":
        raise ScheduleExpressionError("Day-of-month LW (last weekday of the month) is not supported")
    items = _items(DAY_OF_MONTH, text)
    weekdays = [item for item in items if item[-1:] in "wW"]
    if weekdays:
        if len(items) > 1:  # croniter's limitation, and Quartz's
            raise ScheduleExpressionError("Day-of-month: W must stand alone, e.g. 15W")
        return f"{DAY_OF_MONTH.number(weekdays[0][:-1], text)}W"
    last = [item for item in items if item.upper() == "L"]
    days = set().union(*(DAY_OF_MONTH.values(item) for item in items if item.upper() != "L"))
    return ",".join([str(d) for d in sorted(days)] + ["L"] * bool(last))


def _day_of_week(text):
    """Day-of-week: AWS numbers 1-7 from Sunday, croniter 0-6, so every day number is shifted down by one.

    n#k (k-th n-day of the month) becomes (n-1)#k; nL (last n-day of the month) becomes L(n-1);
    L alone is the last day of the week, Saturday.
    """
    if text in ("?", "*"):
        return "*"
    days, special = set(), []
    for item in _items(DAY_OF_WEEK, text):
        day, hash_, nth = item.partition("#")
        if hash_:
            if not re.fullmatch(r"[1-5]", nth):
                raise ScheduleExpressionError(f"Day-of-week # must be 1–5 (the nth such day of the month), not {nth}")
            special.append(f"{DAY_OF_WEEK.number(day, item) - 1}#{nth}")
        elif item.upper() == "L":
            days.add(7)
        elif len(item) > 1 and item[-1] in "lL":
            special.append(f"L{DAY_OF_WEEK.number(item[:-1], item) - 1}")
        else:
            days |= DAY_OF_WEEK.values(item)
    if days and special:  # croniter can't mix them
        raise ScheduleExpressionError("Day-of-week can't combine # or L with plain days")
    return ",".join(special or [str(d - 1) for d in sorted(days)])


def _aware(moment, name):
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {moment!r}")
    return moment
