"""Working days for notice periods (terms 13.2): Monday to Friday in the local time zone,
less Mongolia's public holidays. The calendar is the `holidays` package's (it follows the
lunar ones: Tsagaan Sar, Buddha's and Chinggis Khaan's birthdays), corrected by the days the
government adds or moves (SONOR_HOLIDAYS_ADD, SONOR_HOLIDAYS_REMOVE)."""

from datetime import date, datetime, time, timedelta
from functools import cache

import holidays
from django.conf import settings
from django.utils import timezone


@cache
def _official_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("MN", years=year))


def is_working_day(day: date) -> bool:
    if day.weekday() >= 5:
        return False
    iso = day.isoformat()
    if iso in settings.SONOR_HOLIDAYS_ADD:
        return False
    return day not in _official_holidays(day.year) or iso in settings.SONOR_HOLIDAYS_REMOVE


def earliest_after_working_days(start: datetime, working_days: int) -> datetime:
    """The first moment with `working_days` whole working days of notice after `start`:
    from Friday 10:00 with two, Tuesday 10:00; from Saturday, Wednesday 00:00."""
    start = timezone.localtime(start)
    need = timedelta(days=working_days)
    moment = start
    day = start.date()
    while need > timedelta(0):
        if is_working_day(day):
            day_start = timezone.make_aware(datetime.combine(day, time.min), start.tzinfo)
            day_end = day_start + timedelta(days=1)
            available = day_end - max(moment, day_start)
            if available >= need:
                return max(moment, day_start) + need
            need -= available
        day += timedelta(days=1)
        moment = timezone.make_aware(datetime.combine(day, time.min), start.tzinfo)
    return moment
