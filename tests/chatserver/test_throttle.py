"""The shared request counter: one key at a time, or many in one go (the chat send batch),
counting together, in Redis when it is configured and in this process otherwise."""

import time
import uuid

import pytest

from chatserver.core.errors import RateLimited
from chatserver.core.throttle import throttle_check, throttle_check_many


def test_many_keys_count_each_occurrence_and_answer_per_key() -> None:
    a, b = f"test-a-{uuid.uuid4()}", f"test-b-{uuid.uuid4()}"
    answers = throttle_check_many(keys=[a, a, b, a], limit=2, window_seconds=60)
    assert [answer is None for answer in answers] == [True, True, True, False]
    refused = answers[3]
    assert isinstance(refused, RateLimited)
    assert 0 < refused.extra["retry_after"] <= 60


def test_batch_and_single_checks_share_one_counter() -> None:
    key = f"test-{uuid.uuid4()}"
    assert throttle_check_many(keys=[key], limit=2, window_seconds=60) == [None]
    throttle_check(key=key, limit=2, window_seconds=60)
    with pytest.raises(RateLimited):
        throttle_check(key=key, limit=2, window_seconds=60)
    assert isinstance(throttle_check_many(keys=[key], limit=2, window_seconds=60)[0],
                      RateLimited)


def test_a_window_ends_when_its_retry_after_says_and_counting_starts_again() -> None:
    """The counts after the first keep the window's end (a count that outlived its window
    would refuse the key for good)."""
    key = f"test-{uuid.uuid4()}"
    throttle_check(key=key, limit=2, window_seconds=1)
    throttle_check(key=key, limit=2, window_seconds=1)
    with pytest.raises(RateLimited) as refused:
        throttle_check(key=key, limit=2, window_seconds=1)
    time.sleep(refused.value.extra["retry_after"] + 1.05)  # Redis expires in whole seconds
    throttle_check(key=key, limit=2, window_seconds=1)  # a new window: counted from one
    answers = throttle_check_many(keys=[key, key], limit=2, window_seconds=1)
    assert answers[0] is None and isinstance(answers[1], RateLimited)
