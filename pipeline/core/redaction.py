"""Redaction: the one rule for texts that leave the worker (the watch page, and prompts on request).

Payment card numbers, IBANs, e-mail addresses and phone numbers are replaced by a typed
placeholder (`<CARD>`, `<IBAN>`, `<EMAIL>`, `<PHONE>`). The checks come from libraries, imported
lazily (the core stays importable without them):

- cards: a run of 13 to 19 digits (single spaces or dashes between them) whose first digit is a
  payment card's major industry identifier (2 to 6, ISO/IEC 7812) and which passes the Luhn check
  (`stdnum.luhn`), so an order number of 16 digits stays unless it happens to be a valid card
  number of a card issuer's range;
- IBANs: country code, two check digits and the account, validated by `stdnum.iban` (the
  country's length and format, ISO 13616 mod-97 checksum); a mistyped IBAN stays;
- phone numbers: Google's libphonenumber (`phonenumbers.PhoneNumberMatcher`, leniency VALID):
  international numbers (`+44 20 7946 0958`) of any country, national ones (`(415) 555-2671`,
  `020 7946 0958`) of the `phone_regions` given;
- e-mail addresses: `local@domain.tld` (a pattern: no library finds addresses in free text).

Names are not redacted: no person-name model installs from PyPI with a clear provenance and
licence (see the README's "Redaction"). The order above is the order of the passes; each pass
sees the placeholders of the previous ones, which hold no digits, so a card number is never also
a phone number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError
from pipeline.core.predictions import LabelRequest

CARD, IBAN, EMAIL, PHONE = "<CARD>", "<IBAN>", "<EMAIL>", "<PHONE>"
PLACEHOLDERS = (CARD, IBAN, EMAIL, PHONE)
DEFAULT_PHONE_REGIONS = ("US", "GB")

# Candidates only; every one is checked by a library before it is replaced.
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_DIGITS = re.compile(r"\+?\d+(?:[ -]\d+)*")
_PHONE_RUN = re.compile(r"\+?\(?\d[\d().\- ]*\d\)?")
_CARD_LENGTHS = range(13, 20)
_CARD_INDUSTRIES = "23456"  # ISO/IEC 7812 major industry identifiers of payment cards


def _parse_regions(values: list[str]) -> tuple[str, ...]:
    return tuple(v.strip().upper() for value in values for v in value.split(",") if v.strip())


@dataclass(frozen=True)
class RedactionConfig:
    """Redaction of texts that leave the worker (watch --show-text, --redact-prompts)."""

    phone_regions: tuple[str, ...] = field(default=DEFAULT_PHONE_REGIONS, metadata=field_help(
        "countries whose national phone numbers are redacted (international +CC numbers always are); "
        "repeatable or comma-separated ISO 3166 codes (default: US, GB)", flag="--phone-region",
        parse=_parse_regions, metavar="CC"))

    def __post_init__(self) -> None:
        regions = tuple(r.upper() for r in self.phone_regions)
        if not regions:
            raise ConfigError("phone_regions: give at least one region (e.g. US)")
        try:
            import phonenumbers
        except ImportError:  # the check needs the library; redacting will say it is missing
            known = None
        else:
            known = phonenumbers.SUPPORTED_REGIONS
        unknown = [r for r in regions if known is not None and r not in known]
        if unknown:
            raise ConfigError(f"phone_regions: {', '.join(unknown)} not a region phonenumbers knows (e.g. US, GB, DE)")
        object.__setattr__(self, "phone_regions", regions)


def redact(text: str, config: RedactionConfig | None = None) -> str:
    """`text` with its card numbers, IBANs, e-mail addresses and phone numbers replaced by placeholders."""
    return _redactor((config or RedactionConfig()).phone_regions)(text)


def redactor(config: RedactionConfig | None = None) -> Callable[[str], str]:
    """A function that redacts texts as `redact` does, remembering the latest texts it saw."""
    return _redactor((config or RedactionConfig()).phone_regions)


def redact_requests(requests: Sequence[LabelRequest], config: RedactionConfig | None = None) -> list[LabelRequest]:
    """The requests with their target and context texts redacted (what `--redact-prompts` does)."""
    run = redactor(config)
    return [replace(r, turn=replace(r.turn, text=run(r.turn.text)),
                    context=tuple(replace(t, text=run(t.text)) for t in r.context)) for r in requests]


@lru_cache(maxsize=8)
def _redactor(regions: tuple[str, ...]) -> Callable[[str], str]:
    try:
        import phonenumbers
        from stdnum import iban, luhn
    except ImportError as e:  # a broken install: never show or send texts unredacted because of it
        raise ConfigError(f"redaction needs {e.name} (pip install phonenumbers python-stdnum)") from e

    def cards(m: re.Match[str]) -> str:
        # The run's digit groups; a card is the longest stretch of whole groups that checks.
        groups = [(g.start(), g.end(), g[0]) for g in re.finditer(r"\d+", m[0])]
        out, at = [], 0
        i = 1 if m[0].startswith("+") else 0  # +CC...: a phone number's country code, never a card's start
        while i < len(groups):
            number, last = "", None
            for j in range(i, len(groups)):
                number += groups[j][2]
                if len(number) > _CARD_LENGTHS[-1]:
                    break
                if len(number) in _CARD_LENGTHS and number[0] in _CARD_INDUSTRIES and luhn.is_valid(number):
                    last = j
            if last is not None:
                out += [m[0][at:groups[i][0]], CARD]
                at, i = groups[last][1], last
            i += 1
        return "".join(out) + m[0][at:]

    def ibans(m: re.Match[str]) -> str:
        found = m[0]
        for end in range(len(found), 14, -1):
            if end < len(found) and found[end] not in " -":
                continue
            if iban.is_valid(found[:end].upper()):
                return IBAN + found[end:]
        return found

    def valid_phone(candidate: str) -> bool:
        for region in regions:
            try:
                number = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False

    def phone_prefix(m: re.Match[str]) -> str:
        # libphonenumber's matcher gives up on a number followed by more digits or brackets ("... 0958 12/27"):
        # the longest run of its leading digit groups that is a valid number.
        ends = [g.end() for g in re.finditer(r"\d+\)?", m[0])]
        for end in reversed(ends):
            if sum(c.isdigit() for c in m[0][:end]) < 7:
                break
            if valid_phone(m[0][:end]):
                return PHONE + m[0][end:]
        return m[0]

    def phones(text: str) -> str:
        text = matched_phones(text)
        return _PHONE_RUN.sub(phone_prefix, text) if any(c.isdigit() for c in text) else text

    def matched_phones(text: str) -> str:
        spans: list[tuple[int, int]] = []
        for region in regions:
            for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
                spans.append((match.start, match.end))
        if not spans:
            return text
        out, at = [], 0
        for start, end in sorted(spans):
            if start >= at:
                out += [text[at:start], PHONE]
                at = end
            else:
                at = max(at, end)
        return "".join(out) + text[at:]

    @lru_cache(maxsize=16384)
    def run(text: str) -> str:
        if not any(c.isdigit() or c == "@" for c in text):
            return text  # nothing any pass can find: most utterances
        text = _EMAIL.sub(EMAIL, text)
        text = _IBAN.sub(ibans, text)
        text = _DIGITS.sub(cards, text)
        return phones(text)

    return run
