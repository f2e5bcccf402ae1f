"""Working days for maintenance notices (terms 13.2): Mongolia's public holidays, the lunar
ones included, and the days the government adds or moves."""

from datetime import date, datetime
from typing import Any

import pytest
from django.utils import timezone

from notify.workdays import earliest_after_working_days, is_working_day


def local(*args: int) -> datetime:
    return timezone.make_aware(datetime(*args))  # type: ignore[arg-type]


@pytest.mark.parametrize("day", [
    date(2027, 2, 8), date(2027, 2, 9),  # Tsagaan Sar 2027 (from Sunday 7 February)
    date(2026, 2, 18), date(2026, 2, 19), date(2026, 2, 20),  # Tsagaan Sar 2026
    date(2026, 7, 10),  # the first day of Naadam, a Friday
    date(2027, 7, 12), date(2027, 7, 13), date(2027, 7, 14), date(2027, 7, 15),  # Naadam
    date(2027, 5, 20),  # Buddha's birthday 2027
    date(2027, 11, 29),  # Chinggis Khaan's birthday 2027
    date(2027, 11, 26), date(2027, 3, 8), date(2027, 6, 1), date(2027, 12, 29),
])
def test_public_holidays_are_not_working_days(day: date) -> None:
    assert day.weekday() < 5
    assert not is_working_day(day)


def test_a_notice_before_tsagaan_sar_waits_until_after_it() -> None:
    # Friday 5 February 2027, 10:00: the weekend and Tsagaan Sar (8, 9 Feb) do not count.
    assert earliest_after_working_days(local(2027, 2, 5, 10, 0), 2) == local(2027, 2, 11, 10, 0)


def test_a_day_the_government_adds_is_not_a_working_day(settings: Any) -> None:
    assert is_working_day(date(2027, 3, 10))
    settings.SONOR_HOLIDAYS_ADD = ["2027-03-10"]
    assert not is_working_day(date(2027, 3, 10))
    assert earliest_after_working_days(local(2027, 3, 9, 12, 0), 2) == local(2027, 3, 12, 12, 0)


def test_a_holiday_the_government_moves_is_a_working_day(settings: Any) -> None:
    settings.SONOR_HOLIDAYS_REMOVE = ["2027-02-09"]
    assert is_working_day(date(2027, 2, 9))
    assert not is_working_day(date(2027, 2, 8))
