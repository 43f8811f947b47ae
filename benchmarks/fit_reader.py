"""Fit the reader and write rag/reader_weights.json: `python -m benchmarks.fit_reader`.

About 10 minutes on 2 quiet cores (20 beside other work) once `python -m benchmarks.qa_sets` has indexed the sets:
three to collect the cases, one to fit the first stage, the rest for the cross-encoder's stage (skipped when
rag/cross_encoder.safetensors is absent). `--cross-only` refits that stage alone, over the first stage already in the
file: the step after `python -m benchmarks.fit_cross_encoder` has retrained the adapters (about 4 minutes).

Fitting data, never the sets we measure on (CMRC 2018 dev, the seed dev set, the held-out 20% of DRCD and SQuAD 2.0 zh):
- CMRC 2018 trial, DRCD dev (fitting part, Traditional characters as they are) and SQuAD 2.0 zh (fitting part), each
  indexed as a folder of documents (benchmarks.qa_sets) and asked open-domain with the app's own retrieval;
- questions written for fitting over the seed files (benchmarks/data/seed_fit_questions*.jsonl), weighing
  IN_DOMAIN_WEIGHT times as much (DECISION_IN_DOMAIN_WEIGHT in the answer/decline decisions);
- no-answer cases: SQuAD 2.0 zh's unanswerable questions, CMRC trial, DRCD and seed fitting questions asked with
  their gold context taken out of the retrieved passages (whatever the reader then finds is not the answer), and
  answerable questions asking after another year, number or place than their context holds (swap_key_term), and
  CMRC trial questions asked of the seed articles (off their topics).

Two linear models, each in two variants (all features for a question with Chinese, fitted on those cases; only the
language-independent ones for a question without, fitted on every case): the sentence model (does this sentence hold
the answer?), a conditional logit over rag.features.SENTENCE_FEATURES; and the decision model (is the question
answered at all?), a class-balanced logistic regression over the best sentence and its rivals
(rag.answer.DECISION_FEATURES). The decline threshold is the probability below which 10% of the answerable seed fitting
questions of that language fall (of all fitting questions when there are fewer than 10 of those), from a normal
distribution fitted to their logits.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from jieba import posseg

from benchmarks.qa_sets import Question, available, contains_answer, load_seed_fit, prepared, question_vectors
from rag.answer import (CROSS_DECISION_FEATURES, CROSS_LINGUAL_DECISION_FEATURES, CROSS_SENTENCE_FEATURES, DECISION_FEATURES, LANGUAGES,
                        ReaderModel, cross_candidates, cross_decision_features, decision_features, language, linear_model,
                        reader_model, score, sigmoid)
from rag.config import Settings
from rag.cross_encoder import CrossEncoder, cross_scores, load_cross_encoder
from rag.features import CROSS_LINGUAL_FEATURES, SENTENCE_FEATURES, sentence_features
from rag.index import Index
from rag.model import encode_queries, resolve_model
from rag.pipeline import Pipeline
from rag.retrieve import retrieve

FIT_SETS = ("cmrc-trial", "drcd", "squad2-zh")
_ANY_NUMBER = re.compile(r"\d+")
FIRST_YEAR, LAST_YEAR, YEAR_SHIFT = 1000, 2100, 3
GENERIC_PLACES = frozenset(("城市", "农村", "地区", "国家", "全国", "城乡", "新区", "地方", "国内", "国外", "海外", "乡村"))
SWAP_PLACES = ("贵州", "青海", "甘肃", "宁夏", "海南", "吉林", "黑龙江", "云南", "新疆", "内蒙古")
SEED_FIT_NAME = "seed-fit"
IN_DOMAIN_WEIGHT = 10.0
# The decision weighs them more: the app's unanswerable questions (a number, a name, an outcome the articles never give)
# are unlike any external no-answer kind. Fitted on half the seed fitting questions and read on the other half, its
# AUC was 0.901 at ×10, 0.910 at ×30, 0.922 at ×100; ×30 on the validation set: 4 more unanswerables declined, 1 more
# answerable question (of 29) declined. The sentence model keeps ×10: at ×30 it chose worse sentences there.
DECISION_IN_DOMAIN_WEIGHT = 30.0
GOLD_REMOVED_FROM = ("cmrc-trial", "drcd")  # answerable sets that also give no-answer cases
# Questions of an encyclopedia set asked of the seed articles are no-answer cases off the articles' topics (a recipe, a
# visa, a pop star), as users ask; this many of them.
OFF_TOPIC_FROM, OFF_TOPIC_QUESTIONS = "cmrc-trial", 300
REGULARISATION_C = 1.0
CROSS_FIT_CASES = 4000  # fitting cases the cross-encoder reads to fit the second stage (about 9 minutes)
# Declining an answerable question hides a right answer; answering an unanswerable one shows a wrong quote with its
# source beside it, which a reader can check. So the threshold caps false declines rather than balancing the two.
FALSE_DECLINE_CAP = 0.10
MIN_CALIBRATION_ANSWERABLE = round(1 / FALSE_DECLINE_CAP)  # with fewer answerable questions a 10% cap means nothing
VARIANT_FEATURES = {
    "sentence": dict(zip(LANGUAGES, (SENTENCE_FEATURES, CROSS_LINGUAL_FEATURES))),
    "decision": dict(zip(LANGUAGES, (DECISION_FEATURES, CROSS_LINGUAL_DECISION_FEATURES))),
}


@dataclass(frozen=True)
class Case:
    """One question as the reader sees it: its candidate sentences' features and which hold the answer."""

    source: str  # the set, and "-gold-removed" for a no-answer case made from an answerable question
    question: str
    features: np.ndarray
    rows: list[int]
    labels: np.ndarray  # per candidate sentence: holds a gold answer
    answerable: bool
    texts: tuple[str, ...] = ()  # the candidate sentences, for the cross-encoder
    stacking: bool = False  # from the questions the cross-encoder was not trained on, for fitting the second stage


def reader_cases(name: str, index: Index, questions: list[Question], vectors: np.ndarray, settings: Settings,
                 remove_gold: bool = False) -> list[Case]:
    """The reader's view of each question; with remove_gold, of each answerable one with its gold context gone."""
    out = []
    for q, v in zip(questions, vectors):
        if remove_gold:
            if not q.answers:
                continue
            hits = [h for h in retrieve(index, v, q.text, settings.top_k + 10, settings) if index.passages[h.row].article_id != q.context]
            hits = hits[: settings.top_k]
        else:
            hits = retrieve(index, v, q.text, settings.top_k, settings)
        features, rows = sentence_features(index, hits, v, q.text)
        if not rows:
            continue
        labels = np.array([contains_answer(index.sentences[r].text, q.answers) for r in rows])
        if remove_gold and labels.any():  # the answer stands elsewhere too: not a no-answer case
            continue
        out.append(Case(name + ("-gold-removed" if remove_gold else ""), q.text, features, rows, labels, bool(q.answers) and not remove_gold,
                        tuple(index.sentences[r].text for r in rows), q.stacking))
    return out


def swap_key_term(question: str, context: str) -> str | None:
    """The question asking after another number or place, one its gold context does not hold; None if it has neither.

    Users ask near-topic questions the articles cannot answer (宁波2021年的GDP when the articles give 2019 figures):
    these make such no-answer cases from answerable ones, the way SQuAD 2.0's writers swapped entities.
    """
    number = _ANY_NUMBER.search(question)
    if number:
        n = int(number.group())
        swapped = str(n + YEAR_SHIFT if FIRST_YEAR <= n <= LAST_YEAR else n * 2 + 1)
        if swapped not in context:
            return question[: number.start()] + swapped + question[number.end():]
    for word, flag in posseg.lcut(question, HMM=False):
        if flag == "ns" and len(word) >= 2 and word not in GENERIC_PLACES:
            place = next((p for p in SWAP_PLACES if p not in context and p not in question), None)
            return question.replace(word, place, 1) if place else None
    return None


def swapped_questions(index: Index, questions: list[Question]) -> list[Question]:
    """No-answer questions made by swap_key_term from the answerable ones."""
    context: dict[str, str] = {}
    for p in index.passages:
        context[p.article_id] = context.get(p.article_id, "") + p.text
    out = []
    for q in questions:
        text = swap_key_term(q.text, context.get(q.context, "")) if q.answers else None
        if text:
            out.append(Question(text, q.context, (), q.held_out, q.stacking))
    return out


def _record(names: tuple[str, ...], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float) -> dict:
    """The JSON record rag.answer.LinearModel reads."""
    return {"features": list(names), "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
            "coef": np.round(coef, 6).tolist(), "intercept": round(float(intercept), 6)}


def _minimise(loss, n: int) -> np.ndarray:
    """The weights minimising a smooth loss that returns (value, gradient): L-BFGS from zero."""
    from scipy.optimize import minimize

    return minimize(loss, np.zeros(n), jac=True, method="L-BFGS-B").x


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def fit_linear(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], weight: np.ndarray) -> dict:
    """A logistic regression with case weights, both classes weighing the same in all, L2-regularised: the decision model."""
    mean, scale = _standardise(x)
    x = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])  # the last column carries the intercept
    y = y.astype(float)
    weight = np.where(y == 1, 0.5 / (weight @ y), 0.5 / (weight @ (1 - y))) * weight

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        penalty = np.append(w[:-1], 0.0) / REGULARISATION_C / len(y)
        nll = -weight @ (y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))
        return float(nll + 0.5 * penalty @ w), x.T @ (weight * (p - y)) + penalty

    w = _minimise(loss, x.shape[1])
    return _record(names, mean, scale, w[:-1], w[-1])


def fit_ranking(groups: list[tuple[np.ndarray, np.ndarray]], names: tuple[str, ...], weight: np.ndarray) -> dict:
    """A conditional logit (softmax over each question's candidate sentences, L2-regularised): the sentence model.

    It learns to rank one question's sentences against each other, which is what choosing the answer sentence is;
    a pointwise classifier measured 2 points lower in cross-validation on CMRC trial.
    """
    mean, scale = _standardise(np.vstack([x for x, _ in groups]))
    data = [((x - mean) / scale, y / y.sum()) for x, y in groups]
    weight = weight / weight.sum()

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.5 * w @ w / REGULARISATION_C / len(data), w / REGULARISATION_C / len(data)
        for (x, target), c in zip(data, weight):
            z = x @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            total -= c * float(target @ np.log(p + 1e-12))
            grad = grad + c * (x.T @ (p - target))
        return total, grad

    return _record(names, mean, scale, _minimise(loss, len(names)), 0.0)


def _columns(names: tuple[str, ...], all_names: tuple[str, ...]) -> list[int]:
    return [all_names.index(n) for n in names]


def logits_of(record: dict, rows: np.ndarray, all_names: tuple[str, ...]) -> np.ndarray:
    """What the reader computes from a record not yet written."""
    return linear_model(record).logits(rows, all_names)


def best_threshold(p_answered: np.ndarray, answerable: np.ndarray) -> float:
    """The probability below which FALSE_DECLINE_CAP of the answerable fitting cases fall, read from a normal distribution
    fitted to their logits.

    About fifty of the app's own answerable questions lie behind it. Their empirical 10% quantile rested on the fifth
    lowest and moved by 0.14 (the standard deviation over bootstrap resamples); the fitted one moves by 0.07.
    """
    p = np.clip(p_answered[answerable], 1e-6, 1 - 1e-6)
    logits = np.log(p / (1 - p))
    quantile = logits.mean() + NormalDist().inv_cdf(FALSE_DECLINE_CAP) * logits.std(ddof=1)
    return round(float(sigmoid(quantile)), 3)


def calibrated_threshold(p_answered: np.ndarray, answerable: np.ndarray, own: np.ndarray) -> float:
    """best_threshold over the cases of the app's own kind (`own`) when they hold MIN_CALIBRATION_ANSWERABLE answerable
    ones, else over all."""
    calibrate = own if (own & answerable).sum() >= MIN_CALIBRATION_ANSWERABLE else np.ones(len(own), dtype=bool)
    return best_threshold(p_answered[calibrate], answerable[calibrate])


def _weights(cases: list[Case], in_domain: float = IN_DOMAIN_WEIGHT) -> np.ndarray:
    """Each case's weight: the few questions written over the seed articles count `in_domain` times."""
    return np.array([in_domain if c.source.startswith(SEED_FIT_NAME) else 1.0 for c in cases])


def fit(cases: list[Case]) -> dict:
    """The reader's weights record: sentence and decision models per language variant, and the thresholds.

    The thresholds are calibrated on the seed fitting questions of that language (the app's own kind of documents and
    questions) when they hold at least MIN_CALIBRATION_ANSWERABLE answerable ones, else on all fitting cases.
    """
    record: dict = {"sentence": {}, "decision": {}, "threshold": {}}
    for lang in LANGUAGES:
        # The variant for questions with Chinese learns from those alone (an English question's retrieval does not move
        # it); the language-independent one from every case, most of them Chinese.
        served = [c for c in cases if lang == LANGUAGES[1] or language(c.question) == lang]
        ranking = [c for c in served if c.answerable and c.labels.any()]
        # The decision model learns from answered cases whose answer was retrieved, and from every no-answer case.
        deciding = [c for c in served if not c.answerable or c.labels.any()]
        answerable = np.array([c.answerable for c in deciding])
        names = VARIANT_FEATURES["sentence"][lang]
        columns = _columns(names, SENTENCE_FEATURES)
        groups = [(c.features[:, columns], c.labels.astype(float)) for c in ranking]
        record["sentence"][lang] = sentence = fit_ranking(groups, names, _weights(ranking))
        d = np.vstack([decision_features(c.features, logits_of(sentence, c.features, SENTENCE_FEATURES)) for c in deciding])
        names = VARIANT_FEATURES["decision"][lang]
        weights = _weights(deciding, DECISION_IN_DOMAIN_WEIGHT)
        record["decision"][lang] = decision = fit_linear(d[:, _columns(names, DECISION_FEATURES)], answerable, names, weights)
        p = sigmoid(logits_of(decision, d, DECISION_FEATURES))
        own = np.array([c.source.startswith(SEED_FIT_NAME) and language(c.question) == lang for c in deciding])
        record["threshold"][lang] = calibrated_threshold(p, answerable, own)
    return record


def cross_inputs(reader: ReaderModel, case: Case, count: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The first stage's view of a case as the second stage gets it: its logits, the re-read candidates, P(answered)."""
    logits, answered = score(reader, case.features, case.question)
    return logits, cross_candidates(logits, count), answered


def fit_cross(cases: list[Case], record: dict, encoder: CrossEncoder, settings: Settings) -> dict:
    """The second stage's record: how to weigh the cross-encoder's logit against the first stage's, and when to decline.

    Fitted on up to CROSS_FIT_CASES of the fitting cases the cross-encoder was not trained on, those with Chinese (the
    cross-encoder reads each one's best candidates), all seed fitting ones among them; the threshold is calibrated as the
    first stage's.
    """
    reader = reader_model(record)
    chinese = [c for c in cases if c.stacking and language(c.question) == LANGUAGES[0] and (not c.answerable or c.labels.any())]
    own = [c for c in chinese if c.source.startswith(SEED_FIT_NAME)]
    others = [c for c in chinese if not c.source.startswith(SEED_FIT_NAME)]
    rng = np.random.default_rng(0)
    sample = own + [others[i] for i in rng.permutation(len(others))[: max(0, CROSS_FIT_CASES - len(own))]]
    started, views = time.perf_counter(), []
    for n, c in enumerate(sample):
        logits, top, answered = cross_inputs(reader, c, settings.reader.cross.candidates)
        views.append((c, logits, top, answered, cross_scores(encoder, c.question, [c.texts[i] for i in top])))
        if n % 500 == 0:
            print(f"cross-encoder: {n}/{len(sample)} cases, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    ranking = [(np.column_stack([lg[top], cross]), c.labels[top].astype(float)) for c, lg, top, _, cross in views
               if c.answerable and c.labels[top].any()]
    sentence = fit_ranking(ranking, CROSS_SENTENCE_FEATURES, np.ones(len(ranking)))
    deciding = [v for v in views if not v[0].answerable or v[0].labels[v[2]].any()]
    x = np.vstack([cross_decision_features(answered, cross) for _, _, _, answered, cross in deciding])
    answerable = np.array([v[0].answerable for v in deciding])
    decision = fit_linear(x, answerable, CROSS_DECISION_FEATURES, _weights([v[0] for v in deciding], DECISION_IN_DOMAIN_WEIGHT))
    p = sigmoid(logits_of(decision, x, CROSS_DECISION_FEATURES))
    own = np.array([v[0].source.startswith(SEED_FIT_NAME) for v in deciding])
    return {"sentence": sentence, "decision": decision, "threshold": calibrated_threshold(p, answerable, own), "cases": len(sample)}


def collect(settings: Settings, model) -> list[Case]:
    """Every fitting case of every available fitting set."""
    cases: list[Case] = []
    off_topic: tuple[list[Question], np.ndarray] = ([], np.zeros((0, 0)))
    for name in FIT_SETS:
        if not available(name):
            print(f"skipped {name}: absent", file=sys.stderr)
            continue
        index, questions, vectors = prepared(name, settings, model)
        fitting = [i for i, q in enumerate(questions) if not q.held_out]
        qs, vs = [questions[i] for i in fitting], vectors[fitting]
        cases += reader_cases(name, index, qs, vs, settings)
        if name in GOLD_REMOVED_FROM:
            cases += reader_cases(name, index, qs, vs, settings, remove_gold=True)
        cases += _swapped_cases(name, index, qs, settings, model)
        if name == OFF_TOPIC_FROM:
            off_topic = ([Question(q.text, "", (), False, q.stacking) for q in qs[:OFF_TOPIC_QUESTIONS]], vs[:OFF_TOPIC_QUESTIONS])
    index = Pipeline(settings, model=model).ensure_index(progress=False)
    cases += reader_cases(OFF_TOPIC_FROM + "-off-topic", index, *off_topic, settings)
    questions = load_seed_fit(index)
    if questions:
        vectors = encode_queries(model, [q.text for q in questions])
        cases += reader_cases(SEED_FIT_NAME, index, questions, vectors, settings)
        cases += reader_cases(SEED_FIT_NAME, index, questions, vectors, settings, remove_gold=True)
        cases += _swapped_cases(SEED_FIT_NAME, index, questions, settings, model)
    return cases


def _swapped_cases(name: str, index: Index, questions: list[Question], settings: Settings, model) -> list[Case]:
    swapped = swapped_questions(index, questions)
    if not swapped:
        return []
    vectors = question_vectors(name, swapped, settings, model) if name in FIT_SETS else encode_queries(model, [q.text for q in swapped])
    return reader_cases(name + "-swapped", index, swapped, vectors, settings)


def main() -> int:
    """Collect the fitting cases, fit, write the weights file and print what was fitted."""
    from rag.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cross-only", action="store_true",
                        help="refit only the cross-encoder's stage, over the first stage in the weights file (after new adapters)")
    args = parser.parse_args()
    settings = Settings.from_env()
    path = settings.reader.weights
    if args.cross_only and not settings.reader.cross.weights.is_file():
        print(f"nothing to refit: {settings.reader.cross.weights} is absent; the weights file is unchanged")
        return 1
    started = time.perf_counter()
    cases = collect(settings, load_model(settings.model, settings.backend))
    if not cases:
        print("nothing to fit on: ../shared/data is absent; the weights file is unchanged")
        return 0
    record = json.loads(path.read_text(encoding="utf-8")) if args.cross_only else fit(cases)
    if settings.reader.cross.weights.is_file():
        encoder = load_cross_encoder(resolve_model(settings.model), settings.reader.cross)
        record["cross"] = fit_cross(cases, record, encoder, settings)
    counts: dict[str, dict[str, int]] = {}
    for c in cases:
        kind = "answerable" if c.answerable else "no answer"
        counts.setdefault(c.source, {}).setdefault(kind, 0)
        counts[c.source][kind] += 1
    if args.cross_only:
        record["about"]["cross_stage"] = {"command": "python -m benchmarks.fit_reader --cross-only", "fitted_at": time.strftime("%Y-%m-%d")}
    else:
        record["about"] = {
            "command": "python -m benchmarks.fit_reader",
            "fitted_on": counts,
            "model": settings.model,
            "top_k": settings.top_k,
            "fitted_at": time.strftime("%Y-%m-%d"),
        }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    for source, kinds in counts.items():
        print(f"{source}: {kinds}")
    stages = [(lang, {part: record[part][lang] for part in ("sentence", "decision")}, record["threshold"][lang]) for lang in LANGUAGES]
    if "cross" in record:
        stages.append((f"cross-encoder stage ({record['cross']['cases']} cases)", record["cross"], record["cross"]["threshold"]))
    for name, models, threshold in stages:
        print(f"{name}: decline below P(answered) = {threshold:.3f}")
        for part in ("sentence", "decision"):
            print(f"  {part}: " + ", ".join(f"{f} {w:+.2f}" for f, w in zip(models[part]["features"], models[part]["coef"])))
    print(f"wrote {path} ({path.stat().st_size} bytes) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
