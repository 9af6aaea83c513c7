"""BASELINE for bench/faq.py only: the matcher shipped before issue 9, kept verbatim.

Match free-text questions (Italian or English) to FAQ entries, with a calibrated confidence.

Pure and fast (standard library only). A question is normalised (case, accents, punctuation),
split into words, multi-word phrases are joined (intent phrases such as "who can", "how many
projects", "in total", "per project", "open to" become canonical words; the applicant's own
context, "I work for", is dropped), stopwords and context words (places, roles, greetings)
dropped, synonyms mapped to one canonical word and words lightly stemmed. An unknown
hyphenated word is read as its parts ("two-stage"). Words the FAQ does not know are corrected
against its vocabulary by a symmetric-delete spelling index (edit distance 1, or 2 for long
words, or completing a 4-letter word with its missing letter).

Each entry has a profile: its terms (from question variants and keywords), each with an
association strength (keywords and terms common among its variants count most). An entry's
score is the share of the question's informative weight (a soft IDF) that its profile explains,
so words the FAQ does not know (other topics) lower the confidence. A long, chatty question is
also scored by its focus (the sentence that asks, the part after "I would like to know", its
last clause), at a slightly reduced confidence, so context does not drown the intent. Rules
for topics the call facts do not cover (consortium size, project duration, start date, award
criteria, evaluation results, which costs are eligible, the proposal's language, other
editions), for other funding programmes and for small talk cap the score below the fallback
threshold; they always look at the whole question.
Everything is precomputed in `Matcher.__init__`; a look-up walks an inverted index.
"""

from __future__ import annotations

import heapq
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import dataclass as _dataclass


@_dataclass(frozen=True)
class FaqEntry:
    """What the old matcher read of an FAQ entry."""

    id: str
    questions: dict[str, tuple[str, ...]]
    keywords: dict[str, tuple[str, ...]]


def load_entries(path: str) -> list[FaqEntry]:
    """The FAQ entries of the old faq.yaml (kept beside this file), as the old matcher saw them."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return [
        FaqEntry(
            raw["id"],
            {lang: tuple(v) for lang, v in raw["questions"].items()},
            {lang: tuple(v) for lang, v in (raw.get("keywords") or {}).items()},
        )
        for raw in data["entries"]
    ]


# Longest input looked at: enough for any real question, bounded work for any input.
MAX_CHARS = 600
MAX_WORDS = 60
# Unknown words spelling-corrected per question at most (real questions have a few).
MAX_CORRECTIONS = 8
# The score given at most to a question about an uncovered topic, another programme or small talk.
CAPPED_SCORE = 0.3
# Below this confidence the matcher names no entry at all (it would be a fallback anyway).
MIN_CONFIDENCE = 0.25

_TOKEN_RE = re.compile(r"[a-z0-9]+")
_JOIN_RE = re.compile(r"(?<=[a-z0-9])[-_/](?=[a-z0-9])")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})


def _fold(text: str) -> str:
    text = text.translate(_APOSTROPHES)
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.replace("+", " plus ").replace("%", " percent ")


def normalise(text: str) -> str:
    """Casefold, strip accents and join hyphenated words ('Co-financing' -> 'cofinancing')."""
    return _JOIN_RE.sub("", _fold(text))


_COMPOUND_RE = re.compile(r"[a-z0-9]+(?:[-_/][a-z0-9]+)+")
_SPLIT_RE = re.compile(r"[-_/]")
# Prefixes that are no word of their own once a compound is split ("post-Brexit").
_PREFIXES = frozenset({"post", "pre", "ex", "anti", "pro", "co", "re", "sub", "self", "mid"})


def _compounds(text: str) -> dict[str, list[str]]:
    """Hyphenated words of `text`, joined as `words` joins them, with their parts."""
    return {
        _JOIN_RE.sub("", found): [part for part in _SPLIT_RE.split(found) if part not in _PREFIXES]
        for found in _COMPOUND_RE.findall(_fold(text))
    }


def words(text: str) -> list[str]:
    """The normalised words of `text` (letters and digits only)."""
    return _TOKEN_RE.findall(normalise(text))


def _wordset(text: str) -> frozenset[str]:
    return frozenset(words(text))


# ---------------------------------------------------------------------------------------------
# Vocabulary tables

_STOPWORDS_EN = """
a about above after again all also am an and any are as at be been being but by can could
for from get gets got had has have having he her here hers him his i if in into is it its
itself just me might mine more most must my myself no nor not now of off on once only or
other our ours out over please pls plz shall she should so some such than that the their
theirs them then there these they this those through to too us very was we were what whats
whatever which while whom whose will with would yes you your yours hi hello hey thanks thank
kindly know like want wanted wish need needs let lets mean one ones im dear sir madam
regarding concerning info information question questions curious wondering
understand explain exactly actually really currently anyone someone something thing things
way s t d ll re ve m practice basically briefly short quick quickly simple simply tell give
show anything everything say said find out go going able possible there's here's may plus
"""

_STOPWORDS_IT = """
a ad al allo alla ai agli alle anche avere ha hanno ho hai abbiamo avete c ce ci che col coi
con contro cosa cose cui da dal dallo dalla dai dagli dalle degli dei del dell della delle
dello di e ed è era erano essere fa gli i il in io l la le lei lo loro lui ma mi mia mie miei
mio ne negli nei nel nell nella nelle nello no noi non nostra nostre nostri nostro o per più
po può qual quale quali qualche quella quelle quelli quello questa queste questi questo se
sei si sia siamo siete sono su sua sue sui sul sull sulla sulle sullo suo suoi ti tra fra tu
tua tue tuo tuoi tutti tutto tutte tutta un una uno vi voi vorrei volevo vorremmo sapere
dirmi dimmi potete potreste puoi potrei possiamo posso salve buongiorno buonasera grazie
gentilmente cortesemente prego informazione informazioni chiedo spiegare stai sta
spiegami spieghi spiega dica sa sai vuol dire riguardo circa ecc etc cioè ovvero ossia ok
okay esattamente davvero qualcosa cos modo devo deve dobbiamo devono dovete bisogna serve
servono occorre sapete sapreste sappiamo saperne vuole volete volevamo avrei avremmo pratica
praticamente breve ecco allora quindi invece oppure già solo possibile plus stiamo
parlando parliamo
"""

# The applicant's own context in a chatty question: where they are (EU member states, Italian
# regions and cities; non-EU COSME countries are not here, they ask for `countries`), who they
# are, greetings and fillers. They say nothing about the topic, so they are not "unknown"
# words that would lower the confidence.
_CONTEXT_WORDS = """
austria austrian austriaco belgium belgian belgio belga bulgaria bulgarian bulgaro croatia
croatian croazia croato cyprus cypriot cipro cipriota czech czechia ceco ceca denmark danish
danimarca danese estonia estonian estone finland finnish finlandia finlandese france
francia germany germania greece greek grecia greco hungary hungarian ungheria ungherese
ireland irish irlanda irlandese italy italia latvia latvian lettonia lettone lithuania
lithuanian lituania lituano luxembourg lussemburgo malta maltese netherlands dutch olanda
olandese poland polish polonia polacco portugal portuguese portogallo portoghese romania
romanian rumeno slovakia slovak slovacchia slovacco slovenia slovenian sloveno spain spagna
sweden swedish svezia svedese italian italiano italiana italiani
lombardo lombarda piemontese veneta toscano toscana siciliano siciliana pugliese campano
emiliano emiliana sardo sarda friulano ligure laziale calabrese marchigiano umbro abruzzese
applicant applicants proponente proponenti richiedente richiedenti
rappresento rappresentiamo represent representing details detail dettagli dettaglio
chiarimenti chiarimento clarification clarifications further ulteriori
piemonte lombardia veneto liguria emilia romagna toscana umbria marche lazio abruzzo molise
campania puglia basilicata calabria sicilia sardegna trentino friuli giulia valle aosta alto
adige milano roma torino napoli bologna firenze venezia genova bari palermo
somewhere anywhere first beforehand ourselves arrivare arriva arrivano remind ricordami
ricordarmi preciso precisamente concretamente concretely practically supposed meant workers
lavoratori guys folks ragazzi anyway comunque btw inoltre moreover furthermore besides favore
perfavore thx significa significato significano stand stands gentili gentile egregi
spettabile direttore director responsabile coordinatore consulente consultant ceo capofila
coordinator lead leader
"""

# Question words help tell topics apart ("when" -> deadline, "how many" -> funded proposals),
# but a question made only of them ("who are you?") is no evidence of any topic. The vaguest
# ones also weigh less.
_QUESTION_WORDS = _wordset("how who where when chi dove come quando howmuch howmany")
_WEAK = _wordset("how who where chi dove come howmuch")
# "do" is mostly an auxiliary ("how do I apply?"); it is the verb ("what do they do?") only
# when no informative word follows it, or before one of these words.
_AUXILIARIES = frozenset({"do", "does", "did"})
_AFTER_VERB_DO = _wordset("with in for to during exactly actually there here if when once after")
_WEAK_FACTOR = 0.5
_STOPWORDS = _wordset(_STOPWORDS_EN + _STOPWORDS_IT + _CONTEXT_WORDS) - _QUESTION_WORDS

# Multi-word phrases joined into one word (or a few) before anything else; longest match first.
_PHRASES: dict[tuple[str, ...], str] = {
    ("how", "many"): "howmany",
    ("how", "much"): "howmuch",
    ("how", "long"): "howlong",
    ("quanto", "tempo"): "howlong",
    ("cluster", "x", "change"): "clusterxchange",
    ("cluster", "xchange"): "clusterxchange",
    ("cluster", "exchange"): "clusterxchange",
    ("x", "change"): "clusterxchange",
    ("united", "kingdom"): "uk",
    ("great", "britain"): "uk",
    ("regno", "unito"): "uk",
    ("gran", "bretagna"): "uk",
    ("per", "cent"): "percent",
    ("per", "cento"): "percent",
    ("e", "mail"): "email",
    ("get", "in", "touch"): "contact",
    ("fare", "domanda"): "apply",
    ("faccio", "domanda"): "apply",
    ("what", "time", "is", "it"): "clock",
    ("che", "ore", "sono"): "clock",
    ("che", "ora", "e"): "clock",
    ("last", "year"): "previous",
    ("anno", "scorso"): "previous",
    ("next", "year"): "previous",
    ("anno", "prossimo"): "previous",
    ("next", "call"): "previous",
    ("prossimo", "bando"): "previous",
    ("in", "touch"): "contact",
    ("page", "limit"): "pagelimit",
    ("letter", "of", "intent"): "letterofintent",
    ("lettera", "di", "intenti"): "letterofintent",
    ("lettera", "d", "intenti"): "letterofintent",
    ("lump", "sum"): "lumpsum",
    ("paesi", "terzi"): "country noneu",
    ("third", "countries"): "country noneu",
    ("third", "country"): "country noneu",
    ("own", "resources"): "cofinancing",
    ("own", "funds"): "cofinancing",
    ("risorse", "proprie"): "cofinancing",
    ("fondi", "propri"): "cofinancing",
    ("in", "che", "modo"): "come",
    ("exchange", "rate"): "interest",
    ("tasso", "di", "cambio"): "interest",
    ("call", "me"): "contact",
    ("call", "us"): "contact",
    ("call", "back"): "contact",
    ("cluster", "excellence", "programme"): "call",
    ("cluster", "excellence", "program"): "call",
    ("european", "cluster", "excellence", "programme"): "call",
    ("programma", "europeo", "di", "eccellenza", "dei", "cluster"): "call",
    ("programma", "di", "eccellenza", "dei", "cluster"): "call",
    ("eccellenza", "dei", "cluster"): "call",
    ("somma", "forfettaria"): "lumpsum",
    ("funding", "call"): "call",
    ("call", "for", "proposals"): "call",
    ("funding", "opportunity"): "call",
    ("invito", "a", "presentare", "proposte"): "call",
    ("up", "to"): "maximum",
    ("at", "most"): "maximum",
    ("al", "massimo"): "maximum",
    ("fino", "a"): "maximum",
    ("fino", "a", "quando"): "deadline",
    ("fino", "a", "che", "ora"): "deadline",
    ("entro", "quando"): "deadline",
    ("cut", "off"): "deadline",
    ("too", "late"): "deadline",
    ("troppo", "tardi"): "deadline",
    ("in", "tempo"): "deadline",
    ("in", "time"): "deadline",
    ("last", "day"): "deadline",
    ("ultimo", "giorno"): "deadline",
    ("carry", "out"): "do",
    ("aim", "to", "do"): "objective",
    ("aims", "to", "do"): "objective",
    ("want", "to", "do"): "objective",
    ("digital", "europe"): "otherprogramme",
    ("creative", "europe"): "otherprogramme",
    ("europa", "creativa"): "otherprogramme",
    ("europa", "digitale"): "otherprogramme",
    ("horizon", "europe"): "otherprogramme",
    ("horizon", "2020"): "otherprogramme",
    ("orizzonte", "europa"): "otherprogramme",
    ("marie", "curie"): "otherprogramme",
    ("single", "market", "programme"): "otherprogramme",
    ("invest", "eu"): "otherprogramme",
    ("eu4", "health"): "otherprogramme",
    ("connecting", "europe"): "otherprogramme",
    ("social", "fund"): "otherprogramme",
    ("fondo", "sociale"): "otherprogramme",
    ("regional", "development", "fund"): "otherprogramme",
    ("sviluppo", "regionale"): "otherprogramme",
    ("erasmus", "plus"): "otherprogramme",
    # "who can ...?" asks who is eligible (unless it asks whom to write to: see contact)
    ("who", "can"): "whocan",
    ("who", "may"): "whocan",
    ("chi", "puo"): "whocan",
    ("chi", "possono"): "whocan",
    ("chi", "e", "ammesso"): "whocan",
    # whom to write to is a question for the secretariat
    ("who", "can", "i"): "whom",
    ("who", "should", "i"): "whom",
    ("who", "i"): "whom",
    ("to", "whom"): "whom",
    ("a", "chi", "posso"): "whom",
    ("a", "chi", "devo"): "whom",
    ("a", "chi", "mi"): "whom",
    ("a", "chi", "rivolgersi"): "whom",
    # funding questions about one project, and about the whole call
    ("per", "project"): "each project",
    ("per", "proposal"): "each proposal",
    ("per", "partnership"): "each partnership",
    ("per", "application"): "each proposal",
    ("per", "progetto"): "each project",
    ("per", "proposta"): "each proposal",
    ("per", "partenariato"): "each partnership",
    ("a", "progetto"): "each project",
    ("a", "proposta"): "each proposal",
    ("one", "project"): "each project",
    ("a", "project"): "each project",
    ("un", "progetto"): "each project",
    ("a", "testa"): "each",
    ("in", "total"): "total",
    ("in", "tutto"): "total",
    ("in", "totale"): "total",
    ("all", "together"): "total",
    ("get", "money"): "funded",
    ("get", "funding"): "funded",
    ("get", "funded"): "funded",
    ("get", "a", "grant"): "funded",
    ("receive", "money"): "funded",
    ("receive", "funding"): "funded",
    ("be", "funded"): "funded",
    ("ricevono", "soldi"): "funded",
    ("prendono", "soldi"): "funded",
    ("ricevono", "il", "finanziamento"): "funded",
    ("one", "stage"): "single stage",
    ("una", "sola", "fase"): "single stage",
    ("una", "fase"): "single stage",
    ("how", "many", "grants"): "howmany grant funded",
    ("how", "many", "projects"): "howmany project funded",
    ("how", "many", "proposals"): "howmany proposal funded",
    ("how", "many", "partnerships"): "howmany partnership funded",
    ("how", "many", "winners"): "howmany winner funded",
    ("quanti", "progetti"): "howmany project funded",
    ("quante", "proposte"): "howmany proposal funded",
    ("quanti", "partenariati"): "howmany partnership funded",
    ("quante", "sovvenzioni"): "howmany grant funded",
    ("quanti", "contributi"): "howmany grant funded",
    ("quanti", "vincitori"): "howmany winner funded",
    ("two", "stage"): "two stage",
    ("two", "stages"): "two stage",
    ("north", "macedonia"): "country",
    ("macedonia", "del", "nord"): "country",
    ("western", "balkans"): "country",
    ("member", "state"): "country",
    ("member", "states"): "country",
    ("stato", "membro"): "country",
    ("stati", "membri"): "country",
    # the applicant's own context ("I work for a cluster in ...") says nothing about the topic
    ("i", "work"): "",
    ("we", "work"): "",
    ("work", "for"): "",
    ("work", "at"): "",
    ("lavoro", "per"): "",
    ("lavoro", "in"): "",
    ("lavoro", "presso"): "",
    ("lavoriamo", "per"): "",
    ("lavoriamo", "in"): "",
    ("we", "are", "based"): "",
    ("sono", "il", "presidente"): "",
    ("sono", "la", "presidente"): "",
    ("am", "the", "president"): "",
    ("president", "of", "a"): "",
    ("presidente", "di", "un"): "",
    ("based", "in"): "",
    ("located", "in"): "",
    ("con", "sede"): "",
    ("found", "out"): "",
    ("heard", "about"): "",
    # the language of the proposal or of the conversation
    ("in", "italian"): "inlanguage",
    ("in", "english"): "inlanguage",
    ("in", "german"): "inlanguage",
    ("in", "french"): "inlanguage",
    ("in", "spanish"): "inlanguage",
    ("in", "italiano"): "inlanguage",
    ("in", "inglese"): "inlanguage",
    ("in", "tedesco"): "inlanguage",
    ("in", "francese"): "inlanguage",
    ("in", "spagnolo"): "inlanguage",
    ("last", "time"): "previous",
    ("ultima", "volta"): "previous",
    ("last", "edition"): "previous",
    ("ultima", "edizione"): "previous",
    ("success", "rate"): "successrate",
    ("tasso", "di", "successo"): "successrate",
    ("info", "day"): "infoday",
    ("info", "session"): "infoday",
    ("giornata", "informativa"): "infoday",
    # what the call is for, and what it pays for
    ("a", "che", "serve"): "objective",
    ("a", "cosa", "serve"): "objective",
    ("what", "is", "it", "for"): "objective",
    ("the", "point"): "objective",
    ("what", "is", "funded"): "activity",
    ("used", "for"): "activity",
    ("how", "much", "of"): "howmuch share",
    ("quanta", "parte"): "share",
    ("what", "exactly", "is", "funded"): "activity",
    ("what", "gets", "funded"): "activity",
    ("what", "can", "be", "funded"): "activity",
    ("what", "does", "it", "fund"): "activity",
    ("what", "does", "the", "call", "fund"): "activity",
    ("cosa", "finanzia"): "activity",
    ("cosa", "viene", "finanziato"): "activity",
    ("cosa", "si", "finanzia"): "activity",
    ("cosa", "e", "finanziabile"): "activity",
    ("open", "to"): "eligibility",
    ("aperto", "a"): "eligibility",
    ("aperta", "a"): "eligibility",
    ("rivolto", "a"): "eligibility",
    ("rivolta", "a"): "eligibility",
    ("aimed", "at"): "eligibility",
    ("sul", "piatto"): "budget",
    ("on", "the", "table"): "budget",
    ("by", "when"): "deadline",
    ("until", "when"): "deadline",
    # what one applicant can get, and what it pays itself
    ("we", "get"): "receive",
    ("i", "get"): "receive",
    ("can", "we", "get"): "receive",
    ("can", "i", "get"): "receive",
    ("could", "we", "get"): "receive",
    ("will", "we", "get"): "receive",
    ("ci", "danno"): "receive",
    ("ci", "date"): "receive",
    ("pay", "ourselves"): "cofinancing",
    ("we", "pay"): "cofinancing",
    ("metterci", "noi"): "cofinancing",
    ("mettere", "noi"): "cofinancing",
    ("a", "nostro", "carico"): "cofinancing",
    ("own", "contribution"): "cofinancing",
    ("our", "share"): "cofinancing",
    ("nostra", "parte"): "cofinancing",
    ("nostra", "quota"): "cofinancing",
    # other calls
    ("other", "calls"): "previous",
    ("open", "calls"): "previous",
    ("altri", "bandi"): "previous",
    ("bandi", "aperti"): "previous",
    ("next", "generation"): "otherprogramme",
    ("recovery", "fund"): "otherprogramme",
    # "I have a question" announces a question, it does not ask one
    ("ho", "una", "domanda"): "",
    ("have", "a", "question"): "",
    ("una", "domanda", "su"): "",
    # which call this is, and whom it is for
    ("which", "call"): "programme call",
    ("what", "call"): "programme call",
    ("che", "bando"): "programme call",
    ("quale", "bando"): "programme call",
    ("who", "is", "the", "call", "for"): "eligibility",
    ("who", "is", "this", "call", "for"): "eligibility",
    ("who", "is", "it", "for"): "eligibility",
    ("who", "is", "this", "for"): "eligibility",
    ("for", "whom"): "eligibility",
    ("a", "chi", "e", "rivolto"): "eligibility",
    ("a", "chi", "e", "rivolta"): "eligibility",
    ("a", "chi", "si", "rivolge"): "eligibility",
    ("a", "chi", "e", "destinato"): "eligibility",
    ("fuori", "tempo"): "deadline",
    ("who", "can", "i", "call"): "phone",
    ("i", "call"): "phone",
    ("we", "call"): "phone",
    ("non", "eu"): "noneu",
    ("non", "ue"): "noneu",
    ("outside", "the", "eu"): "noneu",
    ("fully", "funded"): "cover percent",
    ("fully", "covered"): "cover percent",
    ("fully", "financed"): "cover percent",
    ("vuole", "fare"): "objective",
    ("vogliono", "fare"): "objective",
    ("wants", "to", "do"): "objective",
    ("fa", "parte", "di"): "belong",
    ("is", "it", "part", "of"): "belong",
    ("is", "this", "part", "of"): "belong",
    ("quanti", "soldi"): "howmuch money",
    ("quanti", "fondi"): "howmuch fund",
    ("quanti", "euro"): "howmuch euro",
    ("quanti", "milioni"): "howmuch million",
    ("how", "many", "euros"): "howmuch euro",
    ("how", "many", "millions"): "howmuch million",
    ("date", "today"): "clock",
    ("data", "di", "oggi"): "clock",
    ("what", "day", "is", "it"): "clock",
    ("che", "giorno", "e", "oggi"): "clock",
    ("fino", "a", "che"): "deadline",
    ("entro", "che", "giorno"): "deadline",
    ("entro", "che", "data"): "deadline",
    ("general", "info"): "overview",
    ("general", "information"): "overview",
    ("informazioni", "generali"): "overview",
    ("possono", "dare"): "receive",
    ("puo", "dare"): "receive",
    ("possiamo", "avere"): "receive",
    ("can", "we", "have"): "receive",
    # "how does that work?" asks for an explanation of whatever it is about
    ("that", "work"): "",
    ("that", "works"): "",
    ("it", "work"): "",
    ("it", "works"): "",
    ("this", "work"): "",
    ("this", "works"): "",
    ("in", "concreto"): "",
    ("di", "preciso"): "",
    ("in", "che", "modo", "si", "partecipa"): "procedure",
    ("come", "si", "partecipa"): "procedure",
    ("come", "partecipare"): "procedure",
    ("come", "partecipo"): "procedure",
    ("come", "partecipiamo"): "procedure",
    ("how", "to", "participate"): "procedure",
    ("how", "i", "participate"): "procedure",
    ("how", "we", "participate"): "procedure",
    ("how", "to", "take", "part"): "procedure",
    ("tempo", "massimo"): "deadline",
    # small talk about the bot itself
    ("what", "can", "you", "do"): "smalltalk",
    ("nice", "to", "meet"): "smalltalk",
    ("piacere", "di", "conoscerti"): "smalltalk",
    ("can", "you", "do"): "smalltalk",
    ("sai", "fare"): "smalltalk",
    ("cosa", "fai"): "smalltalk",
    ("your", "name"): "smalltalk",
    ("are", "you", "a"): "smalltalk",
    ("are", "you", "an"): "smalltalk",
    ("are", "you", "human"): "smalltalk",
    ("are", "you", "real"): "smalltalk",
    ("are", "you", "ok"): "smalltalk",
    ("are", "you", "married"): "smalltalk",
    ("you", "like"): "smalltalk",
    ("sei", "umana"): "smalltalk",
    ("sei", "sposato"): "smalltalk",
    ("sei", "sposata"): "smalltalk",
    ("who", "are", "you"): "smalltalk",
    ("how", "are", "you"): "smalltalk",
    ("who", "made", "you"): "smalltalk",
    ("chi", "sei"): "smalltalk",
    ("sei", "un"): "smalltalk",
    ("sei", "una"): "smalltalk",
    ("sei", "umano"): "smalltalk",
    ("come", "stai"): "smalltalk",
    ("che", "tempo", "fa"): "weather",
    # other editions of the call
    ("new", "call"): "previous",
    ("another", "call"): "previous",
    ("next", "round"): "previous",
    ("next", "edition"): "previous",
    ("nuovo", "bando"): "previous",
    ("altro", "bando"): "previous",
    ("prossima", "call"): "previous",
    ("prossima", "edizione"): "previous",
    ("nuova", "call"): "previous",
}
_PHRASE_FIRST = frozenset(key[0] for key in _PHRASES)
_PHRASE_MAX = max(len(key) for key in _PHRASES)


def _synonyms(groups: dict[str, str]) -> dict[str, str]:
    table: dict[str, str] = {}
    for canonical, variants in groups.items():
        for variant in variants.split():
            table[variant] = canonical
    return table


# Canonical word -> surface words (both languages, common inflections) mapped to it.
_SYNONYMS = _synonyms(
    {
        "deadline": "scadenza scadenze scade scadono scaduto scaduta scadere deadlines cutoff "
        "late tardi termine termini expire expires expired entro until till",
        "close": "closing closes closed chiude chiusa chiuso chiusura chiudera chiudono chiudere "
        "passata passato passed",
        "open": "opens opening opened apre aperto aperta apertura aprira aprono aprire "
        "published pubblicato pubblicata launched lanciato lanciata released uscito uscita "
        "usciti esce publication pubblicazione",
        "budget": "budjet bugdet dotazione stanziamento stanziamenti envelope plafond "
        "allocation allocated allocating stanzia stanziati stanziato",
        "million": "milioni millions miliardi miliardo billion billions milione",
        "money": "soldi denaro",
        "request": "ask asking chiedere richiedere richiesta request requesting domandare",
        "use": "used using spend spent usare usati usato utilizzare utilizzati spendere",
        "kind": "tipo tipi type types kinds sort",
        "procedure": "modalita modality modalities procedura procedure process iter",
        "organisation": "university universita chamber camera commercio commerce "
        "association associazione associazioni ngo ong foundation fondazione municipality "
        "comune research ricerca startup startups organization organizations organisations "
        "organizzazione organizzazioni",
        "howmany": "quanti quante",
        "howmuch": "quanto quanta",
        "still": "ancora",
        "euro": "euros eur",
        "maximum": "max massimo massima massimi massime maximal biggest largest highest "
        "ceiling cap tetto limite upper",
        "grant": "grants sovvenzione sovvenzioni contributo contributi subsidy subsidies sussidio",
        "rate": "tasso tassi rates intensity intensita",
        "percent": "percentuale percentuali percentage percentages proportion proporzione",
        "cofinancing": "cofinanziamento cofinanziare cofinance cofinanced cofund cofunding "
        "cofunded cofinanziato cofinanziata",
        "reimburse": "rimborso rimborsa rimborsata rimborsati rimborsate rimborsabili "
        "reimbursement reimbursed reimburses rimborsare",
        "cost": "costi costs spese spesa expenses expenditure",
        "cover": "copre coprono covered covers coperte coperti coperto pay pays paid paga pagano "
        "pagare",
        "proposal": "proposte proposta proposals",
        "project": "progetti progetto projects",
        "partnership": "partenariati partenariato partnerships consortium consortia consorzio "
        "consorzi",
        "winner": "vincitori winners vinceranno vincono vincere vincitore win wins",
        "selected": "selezionati selezionate selezionate scelti scelte chosen selezionare",
        "funded": "financed finanziati finanziate finanziato finanziata",
        "eligibility": "eligible elegible ammissibile ammissibili ammissibilita ammessi "
        "ammesso ammessa ammesse accept accepts accepted accetta accettano accettate ammette "
        "admit admitted allowed permesso permessa consentito consentita",
        "requirement": "requisiti requisito requirements conditions condizioni meet "
        "soddisfare criteri_di_ammissibilita",
        "country": "paesi paese countries nazioni nazione nations stati states "
        "nationality nazionalita",
        "uk": "britain british britannici britannico britannica inglesi england brexit",
        "noneu": "extraue extracomunitari extracomunitario outside fuori",
        "network": "rete reti networks",
        "company": "imprese impresa companies azienda aziende societa firm firms business "
        "businesses enterprise enterprises pmi sme smes",
        "platform": "piattaforma",
        "register": "registrati registrarsi registrazione registration registered "
        "iscrizione iscriversi iscritti registrare registrata registrato",
        "apply": "candidarsi candidarmi candidarci applying candidare",
        "application": "candidatura candidature applications",
        "submit": "presentare presentazione submission submitted inviare invio inviata "
        "inviato presenta",
        "portal": "portale",
        "website": "sito",
        "page": "pagina",
        "official": "ufficiale ufficialmente officially ufficiali",
        "name": "chiama chiamato chiamata called named nome",
        "secretariat": "segreteria secretary",
        "contact": "contatto contatti contattare contattarvi contacts recapito recapiti "
        "ricontattato ricontattata ricontattare ricontattarmi ricontattateci contattatemi "
        "contattami recontact",
        "phone": "telefono telephone telefonare chiamare richiamare phones",
        "email": "mail",
        "talk": "speak parlare",
        "human": "umano persona person operatore operator somebody qualcuno",
        "programme": "programma program programs programmes",
        "call": "bando bandi calls invito opportunity opportunita bot chatbot",
        "agency": "agenzia ente",
        "manage": "gestisce manages managed managing runs gestito gestita gestione charge "
        "behind dietro segue seguito",
        "belong": "rientra appartiene belongs",
        "objective": "obiettivo obiettivi objectives goal goals aim aims aiming scopo scopi "
        "finalita finalities mira mirano punta puntano persegue perseguire pursue purpose point",
        "overall": "main principale generale general",
        "specific": "specifico specifici specifica specifiche specifically concrete concreto "
        "concreta concreti concrete",
        "activity": "attivita activities",
        "action": "azioni actions",
        "do": "does did doing done fare fanno svolgono svolgere realizzare organizzare "
        "organise organize svolge offer offrire offrono provide fornire forniscono",
        "twinning": "gemellaggio gemellaggi",
        "training": "formazione",
        "exchange": "scambio scambi exchanges",
        "mobility": "mobilita",
        "accommodation": "accomodation alloggio",
        "travel": "viaggio viaggi",
        "visit": "visita visite visiting visitors visitor visitatori visitare",
        "host": "ospitare hosting ospitante",
        "clusterxchange": "clusterexchange cxc xchange clusterxchanges",
        "achieve": "hope hopes hoping accomplish raggiungere",
        "participate": "participates participating participation partecipare partecipa "
        "partecipo partecipiamo partecipano partecipazione join joins joining aderire "
        "participants participant partecipanti",
        "today": "tomorrow domani today oggi tonight stasera week settimana weekend",
        "help": "aiuto aiutare aiutarmi aiutami aiutarci helping helpdesk",
        "stage": "stages fase fasi",
        "receive": "ricevere riceve ricevono ottenere ottenibile obtain obtainable",
        "cluster": "distretto distretti clusters",
        "total": "totale complessivo complessiva complessivamente totally",
    }
)
# Names and nationalities of the non-EU COSME countries and of neighbours often asked about:
# they mean "which country", a question for `countries`. (EU member states are context words:
# "we are a cluster in Slovenia, can we apply?" asks who can apply.)
for _name in words(
    """turkey turkish turchia turco turca turchi serbia serbian serbo serba serbi ukraine
    ukrainian ucraina ucraino ucraina ucraini albania albanian albanese albanesi iceland
    icelandic islanda islandese kosovo kosovar kosovaro montenegro montenegrin montenegrino
    macedonia macedonian macedone bosnia bosnian bosniaco erzegovina herzegovina armenia armenian
    armeno moldova moldovan moldavo moldavia switzerland swiss svizzera svizzero norway
    norwegian norvegia norvegese balkans balcani uk liechtenstein israel israele tunisia
    georgia georgian serbe turche turchi ucraine albanese islandesi kosovari montenegrine
    montenegrini macedoni macedoni bosniache bosniaci armene armeni moldave moldavi svizzere
    svizzeri norvegesi britanniche"""
):
    _SYNONYMS.setdefault(_name, "country")
_SYNONYMS["uk"] = "country"

# Words never stemmed: the canonical words above keep their exact form ("cluster" is stemmed
# like the words it is part of, "clustercollaboration").
_PROTECTED = (
    frozenset(_SYNONYMS.values())
    | frozenset(word for joined in _PHRASES.values() for word in joined.split())
) - {"cluster"}

# Names of other funding programmes: a question about them falls back.
_OTHER_PROGRAMMES = _wordset(
    """
    otherprogramme erasmus erasmusplus horizon h2020 horizon2020 interreg life pnrr eic eurostars
    msca erc eit euratom feasr fesr fse erdf esf cef cerv investeu eu4health digitaleurope
    accelerator pathfinder pon por psr urbact feamp smp
    """
)

# Topics the call facts do not cover. A rule fires when the question has a word of its first
# set and, when the second is not empty, one of the second; a word of the third disarms it.
_UNCOVERED_RULES: tuple[tuple[frozenset[str], frozenset[str], frozenset[str]], ...] = (
    # minimum consortium size, number of partners or of countries in a consortium
    (
        _wordset("consortium consortia consorzio consorzi partner partners membri members"),
        _wordset(
            "howmany minimum minimo minima minimi size number numero least quanti quante "
            "dimensione composizione composed composto need required country"
        ),
        _wordset("funded grant winner selected receive"),
    ),
    # how many organisations a partnership needs
    (
        _wordset(
            "organisation soggetti soggetto entities enti members membri partner partners "
            "organizzazioni clusters cluster"
        ),
        _wordset("howmany minimum minimo minima least number numero"),
        _wordset("funded grant winner selected receive"),
    ),
    # how many countries a consortium needs
    (
        _wordset("country"),
        _wordset(
            "howmany number numero minimum minimo minima least required needed necessari "
            "necessarie 2 3 4 5 two three four five due tre quattro cinque"
        ),
        frozenset(),
    ),
    # project duration
    (
        _wordset(
            "duration durata durare dura durano last lasts lasting months mesi years anni "
            "howlong lungo long start starts starting begin begins inizio iniziano inizia "
            "partono avvio kickoff period periodo"
        ),
        _wordset("project partnership grant action implementation attuazione"),
        _wordset("clusterxchange exchange visit mobility"),
    ),
    # award criteria
    (
        _wordset("criteria criterion criteri criterio aggiudicazione"),
        frozenset(),
        _wordset("eligibility requirement"),
    ),
    # who wins and when it is known: the evaluation results
    (
        _wordset(
            "winner selected informed informati notified know sapere sapremo sapranno "
            "awarded assegnati assegnate assegnata announced annunciati annunciato"
        ),
        _wordset("when quando who chi"),
        frozenset(),
    ),
    # whether a kind of cost is eligible (only the rate is confirmed)
    (
        _wordset(
            "personnel personale salary salaries stipendi travel viaggio viaggi trasferte "
            "equipment attrezzature attrezzatura depreciation ammortamento rent affitto "
            "consultancy consulenza consulenze software hardware catering"
        ),
        _wordset("cost reimburse eligibility claim charge rimborsabile"),
        _wordset("clusterxchange exchange visit mobility lumpsum"),
    ),
    # arithmetic
    (
        _wordset("times minus divided multiplied diviso moltiplicato"),
        _wordset(" ".join(str(number) for number in range(101))),
        frozenset(),
    ),
    # which costs are eligible (only the rate is confirmed)
    (
        _wordset("cost"),
        _wordset("eligibility"),
        _wordset("rate percent reimburse cover cofinancing howmuch share quota"),
    ),
    # grant management topics the call facts do not cover
    (
        _wordset(
            "vat iva subcontract subcontracting subcontractor subappalto subappaltare annex "
            "annexes allegato allegati pagelimit letterofintent template overheads indirect "
            "indiretti salary salaries stipendi prefinancing prefinanziamento guarantee "
            "garanzia audit reporting payment payments pagamento pagamenti"
        ),
        frozenset(),
        frozenset(),
    ),
    # the language of the proposal, or of the conversation
    (
        _wordset(
            "language languages lingua lingue italian italiano inglese english german tedesco "
            "french francese spanish spagnolo chinese cinese"
        ),
        _wordset(
            "speak parli parla parlate language languages lingua lingue write written "
            "scritta scritto scrivere translate tradurre translation traduzione answer reply "
            "rispondi rispondere"
        ),
        frozenset(),
    ),
    (_wordset("inlanguage"), frozenset(), frozenset()),
    # events, statistics of the call and people at the agency
    (
        _wordset(
            "webinar webinars infoday event events evento eventi workshop workshops "
            "successrate statistics statistiche"
        ),
        frozenset(),
        frozenset(),
    ),
    (
        _wordset("howmany"),
        _wordset(
            "submitted received pervenute ricevute presentate arrivate arrivati applied "
            "competition concorrenza compete competing people persone employees dipendenti "
            "staff"
        ),
        frozenset(),
    ),
    # help writing or reviewing a proposal (the secretariat can be asked, the bot cannot do it)
    (
        _wordset(
            "write writing draft drafting review check correct redigere scrivere scrivermi "
            "scriveresti rivedere correggere controllare"
        ),
        _wordset("proposal application candidatura"),
        _wordset("secretariat contact whom email whocan chi"),
    ),
    # a minimum grant (only the maximum is confirmed)
    (
        _wordset("minimum minimo minima smallest lowest least"),
        _wordset("grant amount importo funding finanziamento budget money soldi"),
        frozenset(),
    ),
    # other editions of the call
    (
        _wordset(
            "previous precedente precedenti prior earlier scorsa scorso "
            "future futura futuro futuri 2014 2015 2016 2017 2018 2019"
        ),
        frozenset(),
        frozenset(),
    ),
    # evaluation and its results
    (
        _wordset(
            "evaluation evaluate evaluated evaluating evaluator evaluators valutazione ranked rank "
            "ranks classifica points punti "
            "valutazioni valutate valutati valutano valutata valutatori valutare score "
            "scored scoring scores punteggio punteggi ranking graduatoria graduatorie "
            "assessed assessment results result risultati risultato esito esiti outcome "
            "outcomes won vinto vinta notified notification notifica selection selezione"
        ),
        frozenset(),
        frozenset(),
    ),
)

# Small talk and everyday topics; "tempo" is not here ("quanto tempo" is a deadline question).
_OFF_TOPIC = _wordset(
    """
    weather meteo piove pioggia rain sunny joke jokes barzelletta barzellette football calcio
    soccer partita match pizza pizzeria restaurant ristorante movie movies film song canzone
    bitcoin crypto stock borsa capital capitale recipe ricetta love amore old eta president
    presidente elections elezioni horoscope oroscopo chiami clock coffee caffe tea beer birra
    wine vino lunch pranzo dinner cena breakfast colazione hotel flight volo treno train bus
    taxi nato onu schengen birthday compleanno poem poesia translate tradurre tradurmi
    taxes tasse tax dichiarazione declaration job lavorare stipendio lottery lotteria scudetto
    campionato championship league cats cat gatto gatti dog dogs cane cani cook cooking
    cucinare pasta music musica song smalltalk robot chatgpt government governo ministry
    ministero interest interesse mortgage mutuo loan loans prestito prestiti lend borrow presti
    prestare prestarmi
    """
)

# Language detection: frequent function words and telling domain words.
_LANG_WORDS = {
    "en": _wordset(
        """
        the is are what which who when where how why do does can could should would will of
        to for and with this that there my our your we i you be been have has on at by from
        deadline apply eligible eligibility funding grant rate countries country many much
        maximum proposal proposals project projects programme total submit application
        organisation organization company money about please tell me objective objectives
        activities partnership partnerships secretariat contact get still open closed closes
        whats hi hello thanks much long
        """
    ),
    "it": _wordset(
        """
        il lo la le gli un una uno di del della delle dei degli da dal dalla che chi come
        quando dove quale quali qual quanto quanti quante è e sono ci si per con su sul sulla
        nel nella non mi ho abbiamo posso possiamo può vorrei bando scadenza paesi paese
        partecipare candidarsi candidatura domanda progetto progetti proposta proposte
        contributo finanziamento tasso obiettivo obiettivi attività partenariato partenariati
        segreteria contatto contattare soldi totale massimo ancora aperto chiuso ciao grazie
        buongiorno salve cosa cos perché fare qual
        """
    ),
}
_IT_ENDINGS = ("zione", "zioni", "mente", "mento", "menti", "abile", "ibile", "etto", "etti", "ato")
_EN_ENDINGS = ("tion", "tions", "ing", "ness", "ship", "ity", "ies", "ed")


# ---------------------------------------------------------------------------------------------
# Text processing


def _join_phrases(items: list[str]) -> list[str]:
    """Drop auxiliary "do" and join known multi-word phrases into one word."""
    items = [
        item
        for position, item in enumerate(items)
        if item not in _AUXILIARIES
        or (position > 0 and all(later in _STOPWORDS for later in items[position + 1 :]))
        or (position + 1 < len(items) and items[position + 1] in _AFTER_VERB_DO)
    ]
    out: list[str] = []
    i = 0
    while i < len(items):
        if items[i] in _PHRASE_FIRST:
            for size in range(min(_PHRASE_MAX, len(items) - i), 1, -1):
                joined = _PHRASES.get(tuple(items[i : i + size]))
                if joined is not None:
                    out.extend(joined.split())
                    i += size
                    break
            else:
                out.append(items[i])
                i += 1
        else:
            out.append(items[i])
            i += 1
    return out


def stem(word: str) -> str:
    """A light stem shared by Italian and English: inflection off, then a 6-character prefix."""
    if len(word) > 4 and not word.isdigit():
        if word.endswith("ies") and len(word) > 5:
            word = word[:-3] + "y"
        elif word.endswith("ing") and len(word) > 6:
            word = word[:-3]
        elif word.endswith("ed") and len(word) > 5:
            word = word[:-2]
        elif word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if len(word) > 4 and word[-1] in "aeiou":
            word = word[:-1]
    return word[:6]


def _term(word: str) -> str:
    canonical = _SYNONYMS.get(word, word)
    return canonical if canonical in _PROTECTED else stem(canonical)


_QUESTION_TERMS = frozenset(_term(word) for word in _QUESTION_WORDS)
_WEAK_TERMS = frozenset(_term(word) for word in _WEAK)


# ---------------------------------------------------------------------------------------------
# Spelling correction: a symmetric delete index (SymSpell-style)


# Longer "words" (pasted links, keyboard mashing) are not spelling-corrected: bounded work.
_MAX_CORRECTED_LENGTH = 30


def _deletes(word: str, distance: int) -> set[str]:
    found = {word}
    frontier = {word}
    for _ in range(distance):
        following: set[str] = set()
        for item in frontier:
            for i in range(len(item)):
                following.add(item[:i] + item[i + 1 :])
        found |= following
        frontier = following
    return found


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (a swap of neighbours counts 1), capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, before[j - 2] + 1)
            current[j] = value
        if min(current) > limit:
            return limit + 1
        before, previous = previous, current
    return previous[len(b)]


def _max_distance(word: str) -> int:
    """Edits allowed when correcting `word`: two for long words, one for short or very long."""
    if len(word) < 5 or len(word) > _MAX_CORRECTED_LENGTH or word.isdigit():
        return 0
    return 2 if 9 <= len(word) <= 16 else 1


class _Speller:
    """Corrects a word to the nearest known word; ties go to the same first letter, then use."""

    def __init__(self, vocabulary: dict[str, int]) -> None:
        self._known = vocabulary
        self._index: dict[str, list[str]] = {}
        for word in vocabulary:
            for variant in _deletes(word, _max_distance(word)):
                self._index.setdefault(variant, []).append(word)

    def correct(self, word: str) -> str | None:
        """The known word nearest to `word`, or None when none is close enough."""
        limit = _max_distance(word)
        if limit == 0:
            if len(word) == 4 and not word.isdigit():
                # A short word is only completed with one missing letter ("aply" -> "apply").
                longer = [c for c in self._index.get(word, ()) if len(c) == len(word) + 1]
                if longer:
                    return min(longer, key=lambda c: (c[0] != word[0], -self._known[c], c))
            return None
        best: tuple[int, int, int, str] | None = None
        seen: set[str] = set()
        for variant in _deletes(word, limit):
            for candidate in self._index.get(variant, ()):
                if candidate in seen:
                    continue
                seen.add(candidate)
                allowed = min(limit, _max_distance(candidate))
                distance = _edit_distance(word, candidate, allowed)
                if distance > allowed:
                    continue
                key = (distance, int(candidate[0] != word[0]), -self._known[candidate], candidate)
                if best is None or key < best:
                    best = key
        return best[3] if best else None


# ---------------------------------------------------------------------------------------------
# The matcher

# Association of a term with an entry: a keyword counts 1; a term of its question variants
# counts from _A_MIN (in one variant) up to _A_MAX (in at least _A_SHARE of them).
_A_MIN = 0.55
_A_MAX = 0.9
_A_SHARE = 0.3
# Weight of a word the FAQ does not know, relative to a term found in one entry only (1.0).
_UNKNOWN_WEIGHT = 0.6
_UNKNOWN_SHORT_WEIGHT = 0.2
_UNKNOWN_THREE_LETTER_WEIGHT = 0.4
# Share of a spelling-corrected word's weight that counts as matched (the rest as unknown).
_CORRECTED_FACTOR = 0.8
# Matched informative weight needed for full confidence: one specific term is enough.
_EVIDENCE_FULL = 0.6


@dataclass(frozen=True)
class _Query:
    """A question as weighted terms, the weight of its unknown words, and its plain words."""

    terms: dict[str, float]
    unknown: float
    words: frozenset[str]

    @property
    def total(self) -> float:
        """The question's whole informative weight."""
        return sum(self.terms.values()) + self.unknown


def _score(matched: float, content: float, total: float) -> float:
    """Share of the question's weight explained, scaled down on little non-question evidence."""
    evidence = content / _EVIDENCE_FULL
    return matched / total * (evidence if evidence < 1.0 else 1.0)


_REQUEST_RE = re.compile(
    r"\b(?:i(?:'d| would) like to (?:know|ask|understand)|i (?:was|am) wondering|"
    r"i wanted to (?:know|ask)|(?:could|can) you (?:please )?(?:tell|let) me|please tell me|"
    r"(?:vorrei|volevo|vorremmo|volevamo) (?:sapere|chiedere|capire)|mi chiedevo|"
    r"(?:potete|potreste|puoi|potresti) (?:dirmi|indicarmi|spiegarmi))\b",
    re.IGNORECASE,
)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSE_RE = re.compile(r",\s*|\s+-+\s+|:\s+")
# A focus part counts this much of its own score: the whole question is the better evidence.
_SENTENCE_FACTOR = 0.9
_CLAUSE_FACTOR = 0.85
# Questions with fewer informative words than this are read whole only.
_MIN_FOCUS_WORDS = 6
# Clauses shorter than this (in words) are not read on their own.
_MIN_CLAUSE_WORDS = 3


def _focus(text: str) -> list[tuple[str, float]]:
    """Parts of a long question worth reading alone, with the share of their score kept.

    The part that asks is the last sentence ending in "?" (else the last sentence); then its
    last clause, when it is long enough ("Hi, we are a cluster in Slovenia, can we apply?").
    """
    sample = text[:MAX_CHARS].strip()
    if sum(word not in _STOPWORDS for word in words(sample)) < _MIN_FOCUS_WORDS:
        return []
    if "," not in sample and not _SENTENCE_END_RE.search(sample) and ":" not in sample:
        return []
    sentences = [part for part in _SENTENCE_END_RE.split(sample) if _TOKEN_RE.search(part)]
    if not sentences:
        return []
    asking = [part for part in sentences if part.rstrip().endswith("?")]
    sentence = (asking or sentences)[-1].strip()
    # "..., and I would like to know whether we can apply": the request comes after its marker.
    marked = _REQUEST_RE.split(sentence)
    if len(marked) > 1 and _TOKEN_RE.search(marked[-1]):
        sentence = marked[-1].strip()
    parts: list[tuple[str, float]] = []
    if sentence != sample:
        parts.append((sentence, _SENTENCE_FACTOR))
    clauses = [part for part in _CLAUSE_RE.split(sentence) if _TOKEN_RE.search(part)]
    if len(clauses) > 1 and len(words(clauses[-1])) >= _MIN_CLAUSE_WORDS:
        parts.append((clauses[-1], _CLAUSE_FACTOR))
    return parts


class Matcher:
    """Finds the FAQ entry that best explains a question, with a confidence in [0, 1]."""

    def __init__(self, entries: Sequence[FaqEntry]) -> None:
        self._ids = [entry.id for entry in entries]
        surface: dict[str, int] = {}
        profiles = [self._profile(entry, surface) for entry in entries]
        for word in _STOPWORDS | _OTHER_PROGRAMMES | _OFF_TOPIC | set(_SYNONYMS):
            surface.setdefault(word, 1)
        for phrase in _PHRASES:
            for word in phrase:
                surface.setdefault(word, 1)
        for rule in _UNCOVERED_RULES:
            for group in rule:
                for word in group:
                    surface.setdefault(word, 1)
        self._surface = frozenset(surface)
        self._speller = _Speller(surface)
        # A soft document frequency: an entry counts by how strongly it holds the term.
        frequency: dict[str, float] = {}
        for profile in profiles:
            for term, strength in profile.items():
                share = (strength - _A_MIN) / (_A_MAX - _A_MIN) if strength < 1 else 1.0
                frequency[term] = frequency.get(term, 0.0) + max(share, 0.35)
        count = max(1, len(profiles))
        scale = math.log(1 + count)
        self._weight = {
            term: min(1.0, math.log(1 + count / df) / scale) for term, df in frequency.items()
        }
        # Inverted index: term -> {entry index: association strength}.
        self._postings: dict[str, dict[int, float]] = {}
        for index, profile in enumerate(profiles):
            for term, strength in profile.items():
                self._postings.setdefault(term, {})[index] = strength

    @staticmethod
    def _profile(entry: FaqEntry, surface: dict[str, int]) -> dict[str, float]:
        counts: dict[str, int] = {}
        variants = [question for lang in entry.questions for question in entry.questions[lang]]
        for question in variants:
            for term in set(Matcher._terms_of(question, surface)):
                counts[term] = counts.get(term, 0) + 1
        full = max(1.0, _A_SHARE * len(variants))
        profile = {
            term: _A_MIN + (_A_MAX - _A_MIN) * min(1.0, (count - 1) / max(1.0, full - 1))
            for term, count in counts.items()
        }
        for lang in entry.keywords:
            for keyword in entry.keywords[lang]:
                for term in Matcher._terms_of(keyword, surface):
                    profile[term] = 1.0
        return profile

    @staticmethod
    def _terms_of(text: str, surface: dict[str, int]) -> list[str]:
        terms: list[str] = []
        for word in _join_phrases(words(text)):
            surface[word] = surface.get(word, 0) + 1
            if word not in _STOPWORDS:
                terms.append(_term(word))
        return terms

    def _query(self, text: str) -> _Query:
        terms: dict[str, float] = {}
        plain: set[str] = set()
        unknown = 0.0
        corrected: list[str] = []
        guessed: set[str] = set()
        attempts: dict[str, str | None] = {}
        sample = text[:MAX_CHARS]
        raw = words(sample)[:MAX_WORDS]
        parts = _compounds(sample) if any(ch in sample for ch in "-_/") else {}
        if parts:
            # A hyphenated word the FAQ does not know is read as its parts ("two-stage").
            raw = [
                part
                for word in raw
                for part in (parts[word] if word in parts and word not in self._surface else [word])
            ][:MAX_WORDS]
        for word in raw:
            if word not in self._surface:
                if word not in attempts and len(attempts) < MAX_CORRECTIONS:
                    attempts[word] = self._speller.correct(word)
                guess = attempts.get(word)
                if guess is not None:
                    word = guess
                    guessed.add(guess)
            corrected.append(word)
        for word in _join_phrases(corrected):
            plain.add(word)
            plain.add(_SYNONYMS.get(word, word))
            if word in _STOPWORDS:
                continue
            term = _term(word)
            weight = self._weight.get(term)
            if weight is None:
                if not word.isdigit():
                    unknown += (
                        _UNKNOWN_SHORT_WEIGHT
                        if len(word) <= 2
                        else _UNKNOWN_THREE_LETTER_WEIGHT
                        if len(word) == 3
                        else _UNKNOWN_WEIGHT
                    )
                continue
            if term in _WEAK_TERMS:
                weight *= _WEAK_FACTOR
            if word in guessed:
                # A corrected word is a guess: part of its weight stays unexplained.
                unknown += weight * (1 - _CORRECTED_FACTOR)
                weight *= _CORRECTED_FACTOR
            terms[term] = max(weight, terms.get(term, 0.0))
        return _Query(terms, unknown, frozenset(plain))

    @staticmethod
    def _capped(plain: frozenset[str]) -> bool:
        if plain & _OTHER_PROGRAMMES or plain & _OFF_TOPIC:
            return True
        return any(
            plain & triggers and (not companions or plain & companions) and not plain & disarm
            for triggers, companions, disarm in _UNCOVERED_RULES
        )

    def _scores(self, query: _Query, exhaustive: bool = False) -> dict[int, tuple[float, float]]:
        """Entries scored in full, as {index: (confidence before the cap, matched weight)}.

        Max-score pruning keeps look-ups fast on large knowledge bases. Terms are taken from
        the most to the least informative; each one taken adds its entries' partial weights.
        Entries are then scored in full in the order of their optimistic score (partial weight
        plus every term not yet taken), stopping when no optimistic score beats the best full
        score; more terms are taken only while an entry holding none of them could still win.
        When even a perfect match could not reach MIN_CONFIDENCE, nothing is scored.
        With `exhaustive`, every entry sharing a term is scored (for diagnostics).
        """
        terms = [
            (weight, term not in _QUESTION_TERMS, self._postings[term])
            for term, weight in query.terms.items()
            if term in self._postings
        ]
        terms.sort(key=lambda item: (-item[0], len(item[2])))
        count = len(terms)
        rest_weight = [0.0] * (count + 1)
        rest_content = [0.0] * (count + 1)
        for k in range(count - 1, -1, -1):
            weight, is_content, _ = terms[k]
            rest_weight[k] = rest_weight[k + 1] + weight
            rest_content[k] = rest_content[k + 1] + (weight if is_content else 0.0)
        total = query.total
        if not terms or _score(rest_weight[0], rest_content[0], total) < MIN_CONFIDENCE:
            return {}
        partial: dict[int, list[float]] = {}
        full: dict[int, tuple[float, float]] = {}
        best = -1.0
        for k, (weight, is_content, postings) in enumerate(terms):
            if (
                not exhaustive
                and partial
                and best >= _score(rest_weight[k], rest_content[k], total)
            ):
                break
            for index, strength in postings.items():
                if index in full:
                    continue
                gain = weight * strength
                sums = partial.get(index)
                if sums is None:
                    partial[index] = [gain, gain if is_content else 0.0]
                else:
                    sums[0] += gain
                    if is_content:
                        sums[1] += gain
            later = terms[k + 1 :]
            extra_weight, extra_content = rest_weight[k + 1], rest_content[k + 1]
            # A heap, not a sort: usually only the first few candidates are scored in full.
            optimistic = [
                (-_score(sums[0] + extra_weight, sums[1] + extra_content, total), index)
                for index, sums in partial.items()
                if index not in full
            ]
            heapq.heapify(optimistic)
            while optimistic:
                negative_bound, index = heapq.heappop(optimistic)
                if not exhaustive and -negative_bound <= best:
                    break
                matched, content = partial[index]
                for later_weight, later_content, later_postings in later:
                    held = later_postings.get(index)
                    if held is not None:
                        matched += later_weight * held
                        if later_content:
                            content += later_weight * held
                score = _score(matched, content, total)
                full[index] = (score, matched)
                best = max(best, score)
        return full

    def _capped_score(self, query: _Query, score: float) -> float:
        cap = CAPPED_SCORE if self._capped(query.words) else 1.0
        return max(0.0, min(cap, score))

    def ranking(self, text: str, limit: int = 3) -> list[tuple[str, float]]:
        """The best entries looked at, with their confidence, best first (for diagnostics)."""
        query = self._query(text)
        scored = self._scores(query, exhaustive=True)
        ordered = sorted(scored, key=lambda i: (-scored[i][0], -scored[i][1], i))[:limit]
        return [(self._ids[i], self._capped_score(query, scored[i][0])) for i in ordered]

    def _top(self, query: _Query) -> tuple[int, float] | None:
        scored = self._scores(query)
        if not scored:
            return None
        index = min(scored, key=lambda i: (-scored[i][0], -scored[i][1], i))
        return index, scored[index][0]

    def best(self, text: str, lang: str | None = None) -> tuple[str | None, float]:
        """The best FAQ id (None when nothing matches) and a confidence in [0, 1].

        A long, chatty question is also read by its focus (the sentence that asks, then its
        last clause), so the context around the question does not drown it; the focus
        counts slightly less than the whole. Caps (other programmes, uncovered topics, small
        talk) always look at the whole text. Entries are matched in both languages, so
        `lang` is accepted for the interface only.
        """
        query = self._query(text)
        found = self._top(query)
        for part, factor in _focus(text):
            top = self._top(self._query(part))
            if top is not None and (found is None or top[1] * factor > found[1]):
                found = (top[0], top[1] * factor)
        if found is None:
            return None, 0.0
        return self._ids[found[0]], self._capped_score(query, found[1])


def detect_language(text: str) -> str | None:
    """The language of `text`: 'it', 'en', or None when it is too short or ambiguous."""
    scores = {"it": 0.0, "en": 0.0}
    sample = text[:MAX_CHARS]
    if any(ch in sample for ch in "àèéìòù"):
        scores["it"] += 1.0
    for word in words(sample):
        for lang, vocabulary in _LANG_WORDS.items():
            if word in vocabulary:
                scores[lang] += 1.0
        if len(word) > 5:
            if word.endswith(_IT_ENDINGS):
                scores["it"] += 0.5
            if word.endswith(_EN_ENDINGS):
                scores["en"] += 0.5
    it, en = scores["it"], scores["en"]
    if max(it, en) < 1.0 or abs(it - en) < 1.0:
        return None
    return "it" if it > en else "en"
