"""Follow-up questions are read with the previous one; others are left as they are."""
from __future__ import annotations

import pytest

from rag.followup import is_followup, with_context


@pytest.mark.parametrize("question", ["那农村呢？", "具体有哪些措施？", "其中最重要的是什么？", "What about rural areas?", "为什么？"])
def test_followups_are_recognised(question):
    assert is_followup(question)


@pytest.mark.parametrize("question", ["如何释放被抑制的消费需求？", "How can the government boost consumer confidence?"])
def test_whole_questions_are_not_followups(question):
    assert not is_followup(question)
    assert with_context(question, "什么是数字孪生城市？") == question


def test_a_followup_is_joined_to_the_previous_question():
    assert with_context("具体有哪些措施？", "如何释放被抑制的消费需求？") == "如何释放被抑制的消费需求？ 具体有哪些措施？"
    assert with_context("具体有哪些措施？", None) == "具体有哪些措施？"  # nothing before it: asked as it is


def test_a_followup_is_answered_from_the_previous_questions_articles(pipeline):
    alone = pipeline.ask("那农村呢？")
    followed = pipeline.ask(with_context("那农村呢？", "如何释放被抑制的消费需求？"))
    assert {p.article.title for p in followed.passages[:2]} & {"释放消费潜力 扩大居民消费"}
    assert [p.id for p in followed.passages] != [p.id for p in alone.passages]
