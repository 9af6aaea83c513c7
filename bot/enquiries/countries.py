"""Countries for the enquiry form: EU and programme participants first, then any other, then
'other'."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

OTHER_CODE = "OTHER"

# (ISO 3166 alpha-2, English name, Italian name). EU Member States.
EU: tuple[tuple[str, str, str], ...] = (
    ("AT", "Austria", "Austria"),
    ("BE", "Belgium", "Belgio"),
    ("BG", "Bulgaria", "Bulgaria"),
    ("HR", "Croatia", "Croazia"),
    ("CY", "Cyprus", "Cipro"),
    ("CZ", "Czechia", "Cechia"),
    ("DK", "Denmark", "Danimarca"),
    ("EE", "Estonia", "Estonia"),
    ("FI", "Finland", "Finlandia"),
    ("FR", "France", "Francia"),
    ("DE", "Germany", "Germania"),
    ("GR", "Greece", "Grecia"),
    ("HU", "Hungary", "Ungheria"),
    ("IE", "Ireland", "Irlanda"),
    ("IT", "Italy", "Italia"),
    ("LV", "Latvia", "Lettonia"),
    ("LT", "Lithuania", "Lituania"),
    ("LU", "Luxembourg", "Lussemburgo"),
    ("MT", "Malta", "Malta"),
    ("NL", "Netherlands", "Paesi Bassi"),
    ("PL", "Poland", "Polonia"),
    ("PT", "Portugal", "Portogallo"),
    ("RO", "Romania", "Romania"),
    ("SK", "Slovakia", "Slovacchia"),
    ("SI", "Slovenia", "Slovenia"),
    ("ES", "Spain", "Spagna"),
    ("SE", "Sweden", "Svezia"),
)

# Non-EU countries participating in the call's programme (call-facts.md, 2018 list), then the United
# Kingdom, which the call text addresses in a section of its own.
PROGRAMME_COUNTRIES: tuple[tuple[str, str, str], ...] = (
    ("IS", "Iceland", "Islanda"),
    ("AL", "Albania", "Albania"),
    ("BA", "Bosnia and Herzegovina", "Bosnia ed Erzegovina"),
    ("XK", "Kosovo", "Kosovo"),
    ("ME", "Montenegro", "Montenegro"),
    ("MK", "North Macedonia", "Macedonia del Nord"),
    ("RS", "Serbia", "Serbia"),
    ("TR", "Turkey", "Turchia"),
    ("AM", "Armenia", "Armenia"),
    ("MD", "Moldova", "Moldavia"),
    ("UA", "Ukraine", "Ucraina"),
    ("GB", "United Kingdom", "Regno Unito"),
)

# The buttons offered first: the countries most applicants are expected to come from.
COMMON = ("IT", "ES", "FR", "DE", "BE", "NL", "PL", "PT")

# Other ways people type these countries (already accent- and case-folded).
ALIASES: dict[str, str] = {
    "uk": "GB",
    "great britain": "GB",
    "gran bretagna": "GB",
    "inghilterra": "GB",
    "england": "GB",
    "scotland": "GB",
    "scozia": "GB",
    "wales": "GB",
    "galles": "GB",
    "northern ireland": "GB",
    "irlanda del nord": "GB",
    "britain": "GB",
    "regno unito di gran bretagna": "GB",
    "el": "GR",
    "hellas": "GR",
    "holland": "NL",
    "olanda": "NL",
    "the netherlands": "NL",
    "czech republic": "CZ",
    "repubblica ceca": "CZ",
    "turkiye": "TR",
    "macedonia": "MK",
    "fyrom": "MK",
    "republic of north macedonia": "MK",
    "kosova": "XK",
    "moldavia": "MD",
    "republic of moldova": "MD",
    "moldova republic of": "MD",
    "bosnia": "BA",
    "bosnia herzegovina": "BA",
    "bosnia erzegovina": "BA",
    "slovak republic": "SK",
    "repubblica slovacca": "SK",
    "deutschland": "DE",
    "espana": "ES",
    "osterreich": "AT",
    "polska": "PL",
    "sverige": "SE",
    "suomi": "FI",
    "eire": "IE",
    "hrvatska": "HR",
    "magyarorszag": "HU",
    "cesko": "CZ",
    "nederland": "NL",
    "belgique": "BE",
    "belgie": "BE",
    "danmark": "DK",
    "island": "IS",
    "shqiperia": "AL",
    "srbija": "RS",
    "crna gora": "ME",
    "ukraina": "UA",
    "hayastan": "AM",
    "usa": "US",
    "united states of america": "US",
    "stati uniti d america": "US",
    "svizra": "CH",
    "schweiz": "CH",
    "suisse": "CH",
    "other": OTHER_CODE,
    "others": OTHER_CODE,
    "altro": OTHER_CODE,
    "altri": OTHER_CODE,
    "altro paese": OTHER_CODE,
    "other country": OTHER_CODE,
    "another country": OTHER_CODE,
}

# Babel territory codes that are regions or pseudo-codes, not countries.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "ZZ", "QO", "XA", "XB"})


@dataclass(frozen=True)
class Country:
    """A country the form accepts; `group` is 'eu', 'programme' or 'other'."""

    code: str
    en: str
    it: str
    group: str

    def label(self, lang: str) -> str:
        """The name shown to the user."""
        return self.it if lang == "it" else self.en

    @property
    def stored(self) -> str:
        """The value written to the enquiry: the English name, one spelling for everyone."""
        return self.en


OTHER = Country(OTHER_CODE, "Other", "Altro", "other")


def fold(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a name, for matching."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    bare = bare.replace("&", " and ")
    words = re.sub(r"[^\w]+", " ", bare).split()
    # "and"/"e"/"the" vary between spellings of the same country.
    return " ".join(word for word in words if word not in ("and", "e", "the", "ed"))


@cache
def listed() -> tuple[Country, ...]:
    """EU Member States, then the programme's non-EU countries and the UK, in list order."""
    eu = tuple(Country(code, en, it, "eu") for code, en, it in EU)
    others = tuple(Country(code, en, it, "programme") for code, en, it in PROGRAMME_COUNTRIES)
    return eu + others


@cache
def _world() -> dict[str, Country]:
    # Imported here: Babel's locale data is only needed once someone types a country.
    from babel import Locale

    english = Locale("en").territories
    italian = Locale("it").territories
    world: dict[str, Country] = {}
    for code, name in english.items():
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES:
            world[code] = Country(code, str(name), str(italian.get(code, name)), "other")
    for country in listed():
        world[country.code] = country
    return world


@cache
def _index() -> dict[str, Country]:
    world = _world()
    index: dict[str, Country] = {}
    # Babel's names first, so the listed countries' own names and the aliases win.
    for country in world.values():
        index.setdefault(fold(country.en), country)
        index.setdefault(fold(country.it), country)
    for country in listed():
        index[fold(country.en)] = country
        index[fold(country.it)] = country
    for alias, code in ALIASES.items():
        index[fold(alias)] = OTHER if code == OTHER_CODE else world[code]
    index[fold(OTHER.en)] = OTHER
    index[fold(OTHER.it)] = OTHER
    return index


def by_code(code: str) -> Country | None:
    """A country by ISO code (or 'OTHER'), or None."""
    if code.upper() == OTHER_CODE:
        return OTHER
    return _world().get(code.upper())


def find_country(text: str) -> Country | None:
    """The country the user means: a name in it or en, an ISO code, an alias, or 'other'."""
    key = fold(text)
    if not key:
        return None
    found = _index().get(key)
    if found is None and len(key) == 2 and key.isalpha():
        found = by_code(key)
    return found
