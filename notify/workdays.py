"""Working days for notice periods (terms 13.2): Monday to Friday in the local time zone,
less the public holidays configured in settings."""

from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone


def is_working_day(day: date) -> bool:
    if day.weekday() >= 5:
        return False
    if day.strftime("%m-%d") in settings.SONOR_PUBLIC_HOLIDAYS_YEARLY:
        return False
    return day.isoformat() not in settings.SONOR_PUBLIC_HOLIDAYS


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
