"""Questions asked at once share one model call, and each asker still gets its own answer."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.batching import Batcher

WAIT_S = 60  # a bound on waiting for threads, never a measured time


def test_items_that_arrive_while_busy_share_one_call():
    calls: list[list[int]] = []
    release = threading.Event()

    def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            assert release.wait(WAIT_S)
        return [2 * i for i in items]

    batcher = Batcher(double, max_size=8)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher, 0)
        while not calls:  # the first call is running and blocked
            threading.Event().wait(0.01)
        rest = [pool.submit(batcher, i) for i in range(1, 6)]
        while batcher._queue.qsize() < 5:
            threading.Event().wait(0.01)
        release.set()
        assert first.result(WAIT_S) == 0 and [f.result(WAIT_S) for f in rest] == [2, 4, 6, 8, 10]
    assert calls[0] == [0] and sorted(calls[1]) == [1, 2, 3, 4, 5]


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    def fail_on_negative(items: list[int]) -> list[int]:
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return items

    batcher = Batcher(fail_on_negative)
    with pytest.raises(ValueError, match="negative"):
        batcher(-1)
    assert batcher(3) == 3


def test_concurrent_questions_get_the_answers_asked_alone(pipeline):
    questions = ["如何释放被抑制的消费需求？", "什么是数字孪生城市？", "如何发展城市夜经济？", "马拉松全程是多少公里？",
                 "How can blockchain technology help build a fair and trustworthy business environment?"] * 4
    alone = {q: pipeline.ask(q).answer for q in set(questions)}
    with ThreadPoolExecutor(len(questions)) as pool:
        together = list(pool.map(lambda q: pipeline.ask(q).answer, questions))
    assert together == [alone[q] for q in questions]
