"""Test data factories (factory_boy)."""

from datetime import date, timedelta

import factory
from django.utils import timezone

from identity.models import PhoneNumber, User
from notify.models import Agency


def register_number_for(n: int) -> str:
    """A valid citizen register number, unique for n below two million: a birth date between
    1950 and 2004 (the month +20 from 2000 on), then two digits telling the rounds apart."""
    born = date(1950, 1, 1) + timedelta(days=n % 20_000)
    month = born.month + 20 if born.year >= 2000 else born.month
    return f"УБ{born.year % 100:02d}{month:02d}{born.day:02d}{n // 20_000 % 100:02d}"


def mobile_for(n: int) -> str:
    """A valid, unique Mongolian mobile number (Mobicom's 99 range) for each n."""
    return f"+97699{n % 1_000_000:06d}"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("register_number",)

    register_number = factory.Sequence(register_number_for)
    name = factory.Sequence(lambda n: f"Иргэн {n}")


class PhoneNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PhoneNumber

    user = factory.SubFactory(UserFactory)
    e164 = factory.Sequence(mobile_for)
    verified_at = factory.LazyFunction(timezone.now)


class AgencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agency
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Agency {n}")
