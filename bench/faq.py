"""FAQ matching benchmark: accuracy per id and language, and latency, against a baseline.

Run: .venv/bin/python bench/faq.py [--rounds N] [--synthetic N]

Prints, for the labelled development set (tests/data/dev_questions.yaml):
  (a) the shipped knowledge base with bot.knowledge.match.Matcher;
  (b) a synthetic knowledge base of 5 000 entries (the shipped ones plus generated ones),
      for scale: accuracy on the same dev set and latency p50/p99 per query;
  (c) a simple baseline on the same dev set: the nearest question variant by rapidfuzz
      fuzz.token_set_ratio, answering when the ratio reaches a threshold (the best threshold
      on the dev set is chosen, which flatters the baseline).
Then, for each blind set (tests/data/blind*_questions.yaml, written without tuning on them),
the in-scope accuracy and fallback rate of (a) and of the baseline at the same cutoff.
Nothing is asserted: the numbers are printed for people to compare.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.knowledge.facts import load_call  # noqa: E402
from bot.knowledge.faq import FaqEntry, load_faq  # noqa: E402
from bot.knowledge.match import Matcher  # noqa: E402

DATA = ROOT / "tests" / "data"
DEV_SET = DATA / "dev_questions.yaml"
THRESHOLD = 0.5  # the KnowledgeBase default (settings faq.min_score)

Answerer = Callable[[str], tuple[str | None, float]]


@dataclass(frozen=True)
class Item:
    """One labelled dev-set question."""

    q: str
    lang: str
    id: str | None
    typo: bool


@dataclass
class Result:
    """How one answerer did on the dev set."""

    name: str
    predictions: list[str | None]
    latencies_us: list[float]
    build_s: float
    # Per question, its fastest round: the matcher's own cost, without scheduler noise.
    best_us: list[float] = field(default_factory=list)


def load_dev(path: Path = DEV_SET) -> list[Item]:
    """The labelled development set (or another labelled set in the same format)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        Item(str(row["q"]), str(row["lang"]), row.get("id"), bool(row.get("typo", False)))
        for row in data["questions"]
    ]


def run(
    name: str,
    answer: Answerer,
    items: Sequence[Item],
    rounds: int,
    build_s: float,
    threshold: float = THRESHOLD,
) -> Result:
    """Answer every item `rounds` times; keep the first round's answers and every latency."""
    predictions: list[str | None] = []
    latencies: list[float] = []
    # Like timeit: no garbage collection pauses inside the timed calls.
    gc.collect()
    gc.disable()
    try:
        _timed(answer, items, rounds, threshold, predictions, latencies)
    finally:
        gc.enable()
    count = len(items)
    best = [min(latencies[n::count]) for n in range(count)] if count else []
    return Result(name, predictions, latencies, build_s, best)


def _timed(
    answer: Answerer,
    items: Sequence[Item],
    rounds: int,
    threshold: float,
    predictions: list[str | None],
    latencies: list[float],
) -> None:
    for round_no in range(rounds):
        for item in items:
            start = time.perf_counter_ns()
            faq_id, score = answer(item.q)
            latencies.append((time.perf_counter_ns() - start) / 1000)
            if round_no == 0:
                predictions.append(faq_id if faq_id is not None and score >= threshold else None)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def scores(result: Result, items: Sequence[Item]) -> tuple[float, float, float]:
    """In-scope top-1 accuracy, fallback rate, accuracy on typo items."""
    inside = [(p, i) for p, i in zip(result.predictions, items, strict=True) if i.id is not None]
    outside = [(p, i) for p, i in zip(result.predictions, items, strict=True) if i.id is None]
    typos = [(p, i) for p, i in zip(result.predictions, items, strict=True) if i.typo]
    return (
        sum(p == i.id for p, i in inside) / max(1, len(inside)),
        sum(p is None for p, i in outside) / max(1, len(outside)),
        sum(p == i.id for p, i in typos) / max(1, len(typos)),
    )


def print_per_id(results: Sequence[Result], items: Sequence[Item]) -> None:
    """Accuracy per expected id and language, one column per answerer."""
    keys = sorted({(i.id or "(fallback)", i.lang) for i in items})
    for number, result in enumerate(results, 1):
        print(f"  [{number}] {result.name}")
    header = f"{'expected id':<20}{'lang':<6}{'n':>4}" + "".join(
        f"{f'[{number}]':>8}" for number in range(1, len(results) + 1)
    )
    print(header)
    print("-" * len(header))
    for faq_id, lang in keys:
        chosen = [
            n for n, i in enumerate(items) if (i.id or "(fallback)") == faq_id and i.lang == lang
        ]
        row = f"{faq_id:<20}{lang:<6}{len(chosen):>4}"
        for result in results:
            right = sum(result.predictions[n] == items[n].id for n in chosen)
            row += f"{100 * right / len(chosen):>7.0f}%"
        print(row)
    print()


def print_summary(results: Sequence[Result], items: Sequence[Item]) -> None:
    """Overall accuracy, fallback, typo accuracy and latency per answerer."""
    header = (
        f"{'answerer':<34}{'in-scope':>9}{'fallback':>9}{'typos':>8}"
        f"{'p50 µs':>9}{'p99 µs':>9}{'max µs':>9}{'p99 best':>9}{'build s':>9}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        inside, fallback, typo = scores(result, items)
        lat = result.latencies_us
        print(
            f"{result.name:<34}{100 * inside:>8.1f}%{100 * fallback:>8.1f}%{100 * typo:>7.1f}%"
            f"{percentile(lat, 0.5):>9.0f}{percentile(lat, 0.99):>9.0f}{max(lat):>9.0f}"
            f"{percentile(result.best_us, 0.99):>9.0f}{result.build_s:>9.2f}"
        )
    print()


# --- synthetic knowledge base -----------------------------------------------------------------

_SYLLABLES = [consonant + vowel for consonant in "bcdflmnprstvz" for vowel in "aeiou"]
_TEMPLATES = {
    "en": [
        "What is the {a} of the {b}?",
        "How does {a} relate to {b} {c}?",
        "Can I get {a} for {b}?",
        "Is {a} needed for the {b} {c}?",
        "Where do I find the {a} {c}?",
        "Who can ask about {a} and {b}?",
        "When is the {b} {a}?",
        "Tell me about {a} {c}",
        "{a} {b}?",
        "{a} and {b} in {c}",
    ],
    "it": [
        "Qual è il {a} del {b}?",
        "Che legame c'è tra {a} e {b} {c}?",
        "Posso avere {a} per {b}?",
        "Serve il {a} per il {b} {c}?",
        "Dove trovo il {a} {c}?",
        "Chi può chiedere di {a} e {b}?",
        "Quando è il {b} {a}?",
        "Parlami del {a} {c}",
        "{a} {b}?",
        "{a} e {b} in {c}",
    ],
}


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(3, 4)))


def synthetic_entries(real: Sequence[FaqEntry], total: int, seed: int = 7) -> list[FaqEntry]:
    """The real entries plus generated ones up to `total`.

    Each generated entry has its own topic word; its other words come from a Zipf-like draw
    over a vocabulary that mixes the real FAQ's words with 4 000 pseudo-words, so common words
    appear in hundreds of entries, as in a large FAQ; question words appear in nearly all.
    """
    rng = random.Random(seed)
    real_words = sorted(
        {
            word.strip("?,.'").lower()
            for entry in real
            for lang in entry.questions
            for question in entry.questions[lang]
            for word in question.split()
            if len(word) > 4
        }
    )
    vocabulary = real_words + [_pseudo_word(rng) for _ in range(4000)]
    rng.shuffle(vocabulary)
    # Zipf-like with a flattened head: the commonest word is in about a sixth of the entries.
    weights = [1 / (rank + 50) for rank in range(len(vocabulary))]
    answer = jinja2.Template("Synthetic answer.")
    entries = list(real)
    for number in range(total - len(real)):
        topic = _pseudo_word(rng) + _pseudo_word(rng)
        questions: dict[str, tuple[str, ...]] = {}
        for lang, templates in _TEMPLATES.items():
            variants = []
            for template in templates:
                b, c = rng.choices(vocabulary, weights, k=2)
                a = topic
                if rng.random() < 0.5:
                    a, b = b, a
                variants.append(template.format(a=a, b=b, c=c))
            questions[lang] = tuple(variants)
        extra = tuple(rng.choices(vocabulary, weights, k=2))
        entries.append(
            FaqEntry(
                id=f"synthetic-{number:04d}",
                topic={"it": topic, "en": topic},
                questions=questions,
                keywords={"it": (topic, *extra), "en": (topic, *extra)},
                answers={"it": answer, "en": answer},
                sources=("official_link",),
            )
        )
    return entries


def synthetic_queries(entries: Sequence[FaqEntry], count: int, seed: int = 11) -> list[str]:
    """Questions drawn from synthetic variants, with a typo in about a third of them."""
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        entry = rng.choice(entries)
        lang = rng.choice(["it", "en"])
        text = rng.choice(entry.questions[lang])
        if rng.random() < 0.33 and len(text) > 6:
            cut = rng.randrange(1, len(text) - 1)
            text = text[:cut] + text[cut + 1 :]
        queries.append(text)
    return queries


# --- baseline ---------------------------------------------------------------------------------


def baseline(entries: Sequence[FaqEntry]) -> Answerer:
    """Nearest question variant by rapidfuzz token_set_ratio; the score is the ratio / 100."""
    from rapidfuzz import fuzz, process, utils

    choices: list[str] = []
    owners: list[str] = []
    for entry in entries:
        for lang in entry.questions:
            for question in entry.questions[lang]:
                choices.append(utils.default_process(question))
                owners.append(entry.id)

    def answer(text: str) -> tuple[str | None, float]:
        found = process.extractOne(
            utils.default_process(text), choices, scorer=fuzz.token_set_ratio
        )
        if found is None:
            return None, 0.0
        _, ratio, index = found
        return owners[index], float(ratio) / 100

    return answer


def main() -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds over the dev set")
    parser.add_argument("--synthetic", type=int, default=5000, help="synthetic KB size")
    args = parser.parse_args()

    started = time.perf_counter()
    call = load_call(ROOT / "config" / "call.yaml")
    entries = load_faq(ROOT / "config" / "faq.yaml", call)
    items = load_dev()
    print(
        f"dev set: {len(items)} questions ({sum(i.id is not None for i in items)} in scope, "
        f"{sum(i.id is None for i in items)} fallback, {sum(i.typo for i in items)} with typos); "
        f"threshold {THRESHOLD}; {args.rounds} timing rounds\n"
    )

    t0 = time.perf_counter()
    shipped = Matcher(entries)
    ours = run("ours (shipped KB)", shipped.best, items, args.rounds, time.perf_counter() - t0)

    big_entries = synthetic_entries(entries, args.synthetic)
    t0 = time.perf_counter()
    big = Matcher(big_entries)
    big_build = time.perf_counter() - t0
    ours_big = run(f"ours ({len(big_entries)}-entry KB)", big.best, items, args.rounds, big_build)
    queries = synthetic_queries(big_entries[len(entries) :], 2000)
    synth_items = [Item(q, "en", None, False) for q in queries]
    ours_big_synth = run(
        f"ours ({len(big_entries)} KB, synth. q.)", big.best, synth_items, 3, big_build
    )

    # The baseline answers when the ratio reaches a cutoff: the best one on the dev set.
    t0 = time.perf_counter()
    base_answer = baseline(entries)
    base_build = time.perf_counter() - t0
    raw = [base_answer(item.q) for item in items]
    best_cut, best_value = 0.5, -1.0
    for percent in range(40, 101, 5):
        cut = percent / 100
        trial = Result("trial", [f if s >= cut else None for f, s in raw], [0.0], 0.0)
        inside, fallback, _typo = scores(trial, items)
        if inside + fallback > best_value:
            best_cut, best_value = cut, inside + fallback
    base = run(
        f"baseline token_set_ratio>={100 * best_cut:.0f}",
        base_answer,
        items,
        args.rounds,
        base_build,
        threshold=best_cut,
    )

    print("Accuracy per expected id and language (dev set; fallback rows = share that fell back)")
    print_per_id([ours, ours_big, base], items)
    print("Summary (latency per query, microseconds)")
    print_summary([ours, ours_big, base], items)
    lat = ours_big_synth.latencies_us
    print(
        f"{len(big_entries)}-entry KB on {len(queries)} synthetic queries x 3 rounds: "
        f"p50 {percentile(lat, 0.5):.0f} µs, p99 {percentile(lat, 0.99):.0f} µs, "
        f"max {max(lat):.0f} µs; p99 of each query's best round "
        f"{percentile(ours_big_synth.best_us, 0.99):.0f} µs"
    )
    print(
        "p99 best = 99th percentile over questions of each question's fastest round "
        "(scheduler noise removed); p50/p99/max are over every timed call."
    )
    blind_sets = sorted(DATA.glob("blind*_questions.yaml"))
    if blind_sets:
        print("\nBlind sets (shipped KB; baseline at the dev-set cutoff)")
        for path in blind_sets:
            blind = load_dev(path)
            for result in (
                run("ours (shipped KB)", shipped.best, blind, 1, 0.0),
                run("baseline", base_answer, blind, 1, 0.0, threshold=best_cut),
            ):
                inside, fallback, _typo = scores(result, blind)
                print(
                    f"  {path.name:<26}{result.name:<20}{len(blind):>5} q.  "
                    f"in-scope {100 * inside:5.1f}%  fallback {100 * fallback:5.1f}%"
                )
    print(f"\ntotal benchmark time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
