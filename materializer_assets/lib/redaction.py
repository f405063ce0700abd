"""PII redaction of the normalized trace's text columns before they reach the lake.

Detected entities become typed placeholders (``<EMAIL>``, ``<PHONE>``,
``<CREDIT_CARD>``, ``<IP_ADDRESS>``, ``<API_KEY>``). Two engines:

- ``"patterns"`` (default): a fixed list of RE2 regexes applied to whole Arrow
  columns with ``pyarrow.compute``: no per-row Python, so it keeps up with
  millions of rows. RE2 has no lookaround, so boundaries are ``\\b`` or a
  captured leading character that the rewrite puts back (``\\1<EMAIL>``); a
  match never consumes the character after it, so two entities one character
  apart are both found.
- ``"presidio"``: Microsoft Presidio's recognizers (Luhn-checked cards,
  libphonenumber phones, ...) per string, plus our API-key patterns. Higher
  recall and precision, orders of magnitude slower; imported only when chosen,
  and installed only with the ``[presidio]`` extra (``pip install -e '.[presidio]'``).

Columns redacted (DESIGN §3): ``prompt``, ``response``, ``metadata``
(strings), ``contexts`` (list<string>) and ``messages``
(list<struct>: its ``content`` and ``tool_calls``). ``tools`` is left as is.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ENTITY_TYPES: tuple[str, ...] = ("API_KEY", "EMAIL", "IP_ADDRESS", "CREDIT_CARD", "PHONE")
ENGINES: tuple[str, ...] = ("patterns", "presidio")
DEFAULT_COLUMNS: tuple[str, ...] = ("prompt", "response", "messages", "contexts", "metadata")
# Fields of a message struct that hold free text; role and name are kept.
MESSAGE_TEXT_FIELDS: tuple[str, ...] = ("content", "tool_calls")


def placeholder(entity: str) -> str:
    """The text that replaces a detected ``entity``: ``"<EMAIL>"`` etc."""
    if entity not in ENTITY_TYPES:
        raise ValueError(f"unknown PII entity {entity!r}; known: {', '.join(ENTITY_TYPES)}")
    return f"<{entity}>"


@dataclass(frozen=True)
class RedactionConfig:
    enabled: bool = True
    engine: str = "patterns"  # "patterns" | "presidio"
    entities: tuple[str, ...] = ENTITY_TYPES  # which types to redact
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR")  # presidio only

    def __post_init__(self) -> None:
        # Accept lists (e.g. from run config) but keep the dataclass hashable.
        for name in ("entities", "columns", "phone_regions"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"RedactionConfig.{name} must be a sequence of names, not the string {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.engine not in ENGINES:
            raise ValueError(f"unknown redaction engine {self.engine!r}; choose one of: {', '.join(ENGINES)}")
        unknown = [entity for entity in self.entities if entity not in ENTITY_TYPES]
        if unknown:
            raise ValueError(f"unknown PII entities {unknown}; known: {', '.join(ENTITY_TYPES)}")


# ---------------------------------------------------------------- patterns
#
# Every regex below is RE2 syntax (what pyarrow.compute runs) and also valid
# for Python's ``re``/``regex`` (the presidio engine reuses the API-key ones).
# Only ASCII classes ([0-9], not \d) so both engines agree.


@dataclass(frozen=True)
class _SecretPattern:
    """An API key/token: ``secret`` is redacted; ``prefix`` (if any) is kept."""

    name: str
    secret: str
    prefix: str | None = None


_TOKEN_CHAR = r"[A-Za-z0-9._~+/-]"  # RFC 6750 b64token
# A header token must look random: a digit and 5+ chars, or 20+ chars, so
# prose such as "Bearer authentication" or "bearer of news" is kept.
_BEARER_TOKEN = (
    rf"(?:{_TOKEN_CHAR}{{4,}}[0-9]{_TOKEN_CHAR}*|{_TOKEN_CHAR}*[0-9]{_TOKEN_CHAR}{{4,}}|{_TOKEN_CHAR}{{20,}})=*"
)
# Key names whose value is a secret: the name may carry any prefix
# (OPENAI_API_KEY, x-api-key, aws_secret_access_key) but must end with one of
# these words, so max_tokens, token_count or password_hash never match.
_SECRET_KEY_NAME = (
    r"\b[A-Za-z0-9_-]*(?i:api[_-]?key|secret[_-]?key|private[_-]?key|access[_-]?key|secret|token|password|passwd|pwd)"
)
# name, optional closing quote (also JSON-escaped \" inside tool_calls
# arguments), then ":" or "=".
_ASSIGNMENT = _SECRET_KEY_NAME + r"\\?[\"']?\s*[:=]\s*"
# Quoted values end at the closing quote (an escaped quote ends them too, so
# nested JSON stays valid); a value starting with "<" or "[" is a placeholder
# or a tokenizer special token such as "[PAD]", not a secret.
_DOUBLE_QUOTED_VALUE = r"[^\"\\\n<\[](?:[^\"\\\n]|\\[^\"\n])*"
_SINGLE_QUOTED_VALUE = r"[^'\\\n<\[](?:[^'\\\n]|\\[^'\n])*"
# Unquoted values must start with a non-digit and contain a digit: keeps JSON
# literals (null, true, 123) valid and code such as api_key=api_key or
# token=os.environ[...] untouched.
_UNQUOTED_CHAR = r"[^\s\"'\\,;&<>(){}\[\]]"
_UNQUOTED_VALUE = rf"[A-Za-z_!@#$%*~]{_UNQUOTED_CHAR}*[0-9]{_UNQUOTED_CHAR}*"

API_KEY_PATTERNS: tuple[_SecretPattern, ...] = (
    _SecretPattern("aws_access_key_id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    # OpenAI sk-..., sk-proj-..., sk-svcacct-...; Anthropic sk-ant-api03-...
    _SecretPattern("openai_anthropic_key", r"\bsk-[A-Za-z0-9_-]{20,}"),
    _SecretPattern("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    _SecretPattern("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    _SecretPattern("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    _SecretPattern("stripe_key", r"\b[spr]k_(?:live|test)_[0-9A-Za-z]{10,}"),
    _SecretPattern("jwt", r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    _SecretPattern("bearer_token", _BEARER_TOKEN, prefix=r"\b(?i:bearer)\s+"),
    _SecretPattern(
        "basic_auth",
        r"[A-Za-z0-9+/]{4,}=*",
        prefix=r"\b(?i:authorization)\\?[\"']?\s*[:=]\s*\\?[\"']?(?i:basic)\s+",
    ),
    _SecretPattern("secret_assignment_double_quoted", _DOUBLE_QUOTED_VALUE, prefix=_ASSIGNMENT + r"\\?\""),
    _SecretPattern("secret_assignment_single_quoted", _SINGLE_QUOTED_VALUE, prefix=_ASSIGNMENT + r"\\?'"),
    _SecretPattern("secret_assignment_unquoted", _UNQUOTED_VALUE, prefix=_ASSIGNMENT),
)

_EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"

_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}"
_HEXTET = r"[0-9A-Fa-f]{1,4}"
# Full and "::"-compressed forms with at least three hextets: "::", "::1" or
# "a::b" are mostly Python slices and C++/Rust paths, and not personal anyway.
_IPV6 = "|".join(
    (
        rf"::(?i:ffff):{_IPV4}\b",
        rf"{_HEXTET}(?::{_HEXTET}){{7}}\b",
        rf"::{_HEXTET}(?::{_HEXTET}){{2,6}}\b",
        rf"{_HEXTET}::{_HEXTET}(?::{_HEXTET}){{1,5}}\b",
        rf"{_HEXTET}:{_HEXTET}::{_HEXTET}(?::{_HEXTET}){{0,4}}\b",
        rf"{_HEXTET}(?::{_HEXTET}){{2,6}}::(?:{_HEXTET}(?::{_HEXTET}){{0,4}}\b)?",
    )
)
# Not after a word character or ".": "v1.2.3.4" and the tail of "1.2.3.4.5"
# are versions, not addresses.
_IP_ADDRESS = rf"(^|[^\w.])(?:{_IPV6}|{_IPV4}\b)"

# First two digits in the card networks' ranges (Mastercard 22-27, Amex,
# Diners, JCB 3x, Visa 4x, Mastercard 5x, Discover/UnionPay 6x): rules out
# epoch-millisecond timestamps (1...) and runs of years (19xx/20xx).
_CARD_PREFIX = r"(?:2[2-7]|[3-6][0-9])"
_UNGROUPED_CARD = rf"{_CARD_PREFIX}[0-9]{{11,17}}"  # 13-19 digits
_CARD = "|".join(
    (
        _UNGROUPED_CARD,
        # 4-4-4-x(-x) and Amex/Diners 4-6-5/4-6-4, one separator style each
        # (a mix such as "9012-345678901234" is a UUID's tail, not a card).
        rf"{_CARD_PREFIX}[0-9]{{2}}(?: [0-9]{{4}}){{2}} [0-9]{{1,4}}(?: [0-9]{{1,3}})?",
        rf"{_CARD_PREFIX}[0-9]{{2}}(?:-[0-9]{{4}}){{2}}-[0-9]{{1,4}}(?:-[0-9]{{1,3}})?",
        r"3[0-9]{3} [0-9]{6} [0-9]{4,5}",
        r"3[0-9]{3}-[0-9]{6}-[0-9]{4,5}",
    )
)
# Not after a word character, "." (the decimals of 0.4123456789012345), "+"
# (an E.164 phone number) or "-" (group 1, kept). A bare JSON number value
# ("id": 4111111111111111) is a second alternative: its key's closing quote
# (group 2, also an escaped \" in nested JSON) and the colon (group 3) are
# captured so the rewrite can quote the placeholder and the JSON stays valid.
_CREDIT_CARD = rf"(?:(^|[^\w.+-])(?:{_CARD})|(\\?\")(\s*:\s*){_UNGROUPED_CARD})\b"

_PHONE_SEP = r"[ .-]"
_INTERNATIONAL_PHONE = "|".join(
    (
        r"\+[1-9][0-9]{6,14}",  # E.164 without separators
        # +CC, optional "(0)"/"(20)", then 3+ groups, or 2 groups of 2-5 and 4-8 digits
        rf"\+[1-9][0-9]{{0,2}}(?:{_PHONE_SEP}?\([0-9]{{1,4}}\))?{_PHONE_SEP}?"
        rf"(?:[0-9]{{1,5}}(?:{_PHONE_SEP}[0-9]{{2,8}}){{2,5}}|[0-9]{{2,5}}{_PHONE_SEP}[0-9]{{4,8}})",
    )
)
# NANP: area code 2-9xx, one separator style (so dates, versions and
# 4-4-4 UUID groups never fit), optional leading "1-".
_US_PHONE = "|".join(
    (
        r"\([2-9][0-9]{2}\) ?[0-9]{3}[ .-][0-9]{4}",
        r"[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}",
        r"[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}",
        r"[2-9][0-9]{2} [0-9]{3} [0-9]{4}",
    )
)
# Not after a word character or ". + -": keeps ids like trace-202-555-0143.
_PHONE = rf"(^|[^\w.+-])(?:{_INTERNATIONAL_PHONE}|(?:1[ .-])?(?:{_US_PHONE}))\b"


@dataclass(frozen=True)
class _Rule:
    """One vectorized pass: ``regex`` replaced by ``rewrite`` (RE2 rewrite syntax)."""

    entity: str
    regex: str
    rewrite: str


def _api_key_rule() -> _Rule:
    """One alternation for all key patterns; each prefix is a group put back."""
    alternatives, prefix_groups = [], 0
    for pattern in API_KEY_PATTERNS:
        if pattern.prefix is None:
            alternatives.append(f"(?:{pattern.secret})")
        else:
            prefix_groups += 1
            alternatives.append(f"({pattern.prefix})(?:{pattern.secret})")
    if prefix_groups > 9:  # RE2 rewrites know \1..\9 only
        raise AssertionError("too many prefixed API-key patterns for one RE2 rewrite")
    rewrite = "".join(f"\\{group}" for group in range(1, prefix_groups + 1)) + placeholder("API_KEY")
    return _Rule("API_KEY", "|".join(alternatives), rewrite)


def _boundary_rule(entity: str, regex: str) -> _Rule:
    """A rule whose group 1 is the leading boundary character, kept."""
    return _Rule(entity, regex, "\\1" + placeholder(entity))


# The fixed order: keys first (a key may contain digit runs or "@"), then
# emails, IP addresses, cards and finally phones, the loosest pattern.
PATTERN_RULES: tuple[_Rule, ...] = (
    _api_key_rule(),
    _Rule("EMAIL", _EMAIL, placeholder("EMAIL")),
    _boundary_rule("IP_ADDRESS", _IP_ADDRESS),
    _Rule("CREDIT_CARD", _CREDIT_CARD, r"\1\2\3\2" + placeholder("CREDIT_CARD") + r"\2"),
    _boundary_rule("PHONE", _PHONE),
)


def _placeholder_total(array: pa.Array, text: str) -> int:
    return pc.sum(pc.count_substring(array, text)).as_py() or 0


class _PatternEngine:
    """Vectorized RE2 redaction of whole string arrays.

    One pass of the union of all rules picks the rows that contain anything
    (a match-only scan costs a fraction of a replace of every row); the rules
    then rewrite only those rows, which are merged back.
    """

    def __init__(self, entities: tuple[str, ...]) -> None:
        self._rules = tuple(rule for rule in PATTERN_RULES if rule.entity in entities)
        self._any_rule = "|".join(f"(?:{rule.regex})" for rule in self._rules)

    def redact_strings(self, array: pa.Array) -> tuple[pa.Array, collections.Counter]:
        counts: collections.Counter = collections.Counter()
        if not self._rules or len(array) == array.null_count:
            return array, counts
        candidates = pc.fill_null(pc.match_substring_regex(array, self._any_rule), False)
        if not pc.any(candidates).as_py():
            return array, counts
        texts = array.filter(candidates)
        for rule in self._rules:
            redacted = pc.replace_substring_regex(texts, pattern=rule.regex, replacement=rule.rewrite)
            changed = pc.not_equal(texts, redacted)
            if pc.any(changed).as_py():
                # Counted as placeholders gained, not as regex matches:
                # count_substring_regex drops the text before each match (so
                # "^" and \b misfire), and a "<EMAIL>" already there is no match.
                marker = placeholder(rule.entity)
                counts[rule.entity] += _placeholder_total(redacted.filter(changed), marker) - _placeholder_total(
                    texts.filter(changed), marker
                )
            texts = redacted
        return pc.replace_with_mask(array, candidates, texts), counts


# ---------------------------------------------------------------- presidio

_PRESIDIO_ENTITIES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IP_ADDRESS": "IP_ADDRESS",
    "API_KEY": "API_KEY",
}
# Drops presidio's "::" (IPv6 unspecified, score 0.1), which is mostly a
# Python slice; every other finding we ask for scores 0.4 (phones) or more.
_PRESIDIO_MIN_SCORE = 0.3
_ENTITY_PRIORITY = {entity: rank for rank, entity in enumerate(ENTITY_TYPES)}


class _PresidioEngine:
    """Presidio analyzer per string (verified offline with presidio 2.2.366).

    The DESIGN §9 recipe works as written: the ``no_op`` NLP engine with
    ``model_name="none"`` needs no spaCy model. Two details it leaves out:
    the registry's own ``global_regex_flags`` (IGNORECASE by default)
    override each recognizer's flags, so our case-sensitive key patterns are
    wrapped in ``(?-i:...)``; and presidio's ``regex`` module allows the
    variable-length lookbehind that keeps a key's prefix (``Bearer ``,
    ``api_key=``) out of the redacted span.
    """

    def __init__(self, entities: tuple[str, ...], phone_regions: tuple[str, ...]) -> None:
        # Without this the email recognizer's tldextract fetches the public
        # suffix list over the network; it must be set before the import.
        os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
        try:
            from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NlpEngineProvider
            from presidio_analyzer.predefined_recognizers import PhoneRecognizer
        except ImportError as exc:  # Presidio is the optional [presidio] extra
            raise ImportError(
                "the 'presidio' redaction engine needs Presidio, an optional extra: "
                f"pip install -e '.[presidio]' ({exc})"
            ) from exc

        nlp_engine = NlpEngineProvider(
            nlp_configuration={"nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "none"}]}
        ).create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
        # The phone recognizer runs libphonenumber once per region and
        # dominates the cost: keep only the configured regions.
        registry.remove_recognizer("PhoneRecognizer")
        registry.add_recognizer(PhoneRecognizer(supported_regions=list(phone_regions)))
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity="API_KEY",
                name="ApiKeyRecognizer",
                patterns=[Pattern(pattern.name, _presidio_regex(pattern), 0.9) for pattern in API_KEY_PATTERNS],
            )
        )
        self._analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
        self._presidio_entities = [name for name, ours in _PRESIDIO_ENTITIES.items() if ours in entities]

    def redact(self, text: str) -> tuple[str, collections.Counter]:
        counts: collections.Counter = collections.Counter()
        if not text:
            return text, counts
        findings = self._analyzer.analyze(
            text=text, language="en", entities=self._presidio_entities, score_threshold=_PRESIDIO_MIN_SCORE
        )
        spans = _non_overlapping(
            (finding.start, finding.end, _PRESIDIO_ENTITIES[finding.entity_type])
            for finding in findings
            if finding.entity_type in _PRESIDIO_ENTITIES
            and not (finding.entity_type == "IP_ADDRESS" and _is_short_ipv6(text[finding.start : finding.end]))
        )
        pieces, position = [], 0
        for start, end, entity in spans:
            pieces.append(text[position:start])
            pieces.append(placeholder(entity))
            counts[entity] += 1
            position = end
        pieces.append(text[position:])
        return "".join(pieces), counts

    def redact_strings(self, array: pa.Array) -> tuple[pa.Array, collections.Counter]:
        counts: collections.Counter = collections.Counter()
        redacted = []
        for text in array.to_pylist():
            if text is None:
                redacted.append(None)
                continue
            new_text, found = self.redact(text)
            counts.update(found)
            redacted.append(new_text)
        return pa.array(redacted, type=array.type), counts


def _is_short_ipv6(text: str) -> bool:
    """True for "::2" or "fe80::1": mostly Python slices; the patterns engine keeps them too."""
    return "." not in text and sum(1 for part in text.split(":") if part) < 3


def _presidio_regex(pattern: _SecretPattern) -> str:
    body = pattern.secret if pattern.prefix is None else f"(?<={pattern.prefix}){pattern.secret}"
    return f"(?-i:{body})"


def _non_overlapping(spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans sorted by start; on overlap the entity earlier in ENTITY_TYPES
    wins (the patterns engine's order), then the longer span."""
    chosen: list[tuple[int, int, str]] = []
    for start, end, entity in sorted(spans, key=lambda s: (_ENTITY_PRIORITY[s[2]], s[0] - s[1], s[0])):
        if all(end <= other_start or start >= other_end for other_start, other_end, _ in chosen):
            chosen.append((start, end, entity))
    return sorted(chosen)


# ---------------------------------------------------------------- columns


def _list_child_range(array: pa.Array) -> pa.Array:
    """The part of a list array's child that its (possibly sliced) rows use."""
    first, last = array.offsets[0].as_py(), array.offsets[-1].as_py()
    return array.values.slice(first, last - first)


def _rebuild_list(array: pa.Array, values: pa.Array) -> pa.Array:
    """``array`` with its child replaced by ``values`` (from _list_child_range)."""
    offsets = pc.subtract(array.offsets, array.offsets[0])
    mask = array.is_null() if array.null_count else None
    list_class = pa.LargeListArray if pa.types.is_large_list(array.type) else pa.ListArray
    return list_class.from_arrays(offsets, values, type=array.type, mask=mask)


StringRedactor = Callable[[pa.Array], pa.Array]


def _redact_column(array: pa.Array, redact_strings: StringRedactor) -> pa.Array:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return redact_strings(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _rebuild_list(array, _redact_column(_list_child_range(array), redact_strings))
    if pa.types.is_struct(kind):
        children = []
        for index, field in enumerate(kind):
            child = array.field(index)
            children.append(_redact_column(child, redact_strings) if field.name in MESSAGE_TEXT_FIELDS else child)
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=mask)
    raise TypeError(f"cannot redact a column of type {kind}: expected string, list<string> or list<struct>")


class Redactor:
    """Redacts PII in text values, a string or a record batch at a time."""

    def __init__(self, config: RedactionConfig = RedactionConfig()) -> None:
        self.config = config
        if config.engine == "presidio" and config.enabled:
            self._engine: _PatternEngine | _PresidioEngine = _PresidioEngine(config.entities, config.phone_regions)
        else:
            self._engine = _PatternEngine(config.entities)

    def _empty_counts(self) -> collections.Counter:
        # Every enabled entity is a key, so asset metadata has a stable shape.
        return collections.Counter({entity: 0 for entity in self.config.entities} if self.config.enabled else {})

    def redact_text(self, text: str | None) -> tuple[str | None, collections.Counter]:
        counts = self._empty_counts()
        if text is None or not self.config.enabled:
            return text, counts
        redacted, found = self._engine.redact_strings(pa.array([text], type=pa.string()))
        counts.update(found)
        return redacted[0].as_py(), counts

    def redact_batch(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, collections.Counter]:
        """The batch with its configured text columns redacted, same schema;
        configured columns the batch does not have are skipped."""
        batches, counts = self.redact_batches([batch])
        return batches[0], counts

    def placeholder_gains(self, original: pa.Array, redacted: pa.Array, rows: pa.Array | None = None) -> collections.Counter:
        """Placeholders that ``redacted`` has more than ``original`` (same length), over
        ``rows`` (a boolean mask) or all rows: what redacting those values counts."""
        counts: collections.Counter = collections.Counter()
        changed = pc.fill_null(pc.not_equal(redacted, original), False)
        if rows is not None:
            changed = pc.and_(changed, rows)
        if not pc.any(changed).as_py():
            return counts
        redacted, original = redacted.filter(changed), original.filter(changed)
        for entity in self.config.entities:
            marker = placeholder(entity)
            counts[entity] += _placeholder_total(redacted, marker) - _placeholder_total(original, marker)
        return counts

    def redact_batches(self, batches: list[pa.RecordBatch]) -> tuple[list[pa.RecordBatch], collections.Counter]:
        """:meth:`redact_batch` of each batch, in one pass of the engine over all their text.

        A message whose content equals its row's ``prompt`` (first message) or
        ``response`` (last message), as in every single-turn trace, is not
        scanned again: it gets the redacted prompt or response, and its
        placeholders are counted as if it had been scanned.
        """
        counts = self._empty_counts()
        if not self.config.enabled:
            return list(batches), counts
        # All text of the batches goes through the engine in one array: pyarrow
        # compiles each regex anew per call, and RE2 rebuilds its DFA lazily
        # from scratch each time, so many small calls cost far more than one.
        pieces: list[pa.Array] = []

        def collect(array: pa.Array) -> pa.Array:
            pieces.append(array)
            return array

        plans = []
        for batch in batches:
            # messages last: its reused contents come from the redacted prompt and response
            names = sorted(
                (name for name in batch.schema.names if name in self.config.columns), key=lambda name: name == "messages"
            )
            reuse = _MessageReuse.plan(batch, names)
            plans.append((names, reuse))
            for name in names:
                if name == "messages" and reuse is not None:
                    _redact_column(batch.column(name), reuse.collector(collect))
                else:
                    _redact_column(batch.column(name), collect)
        if not pieces:
            return list(batches), counts
        combined = pa.concat_arrays([piece.cast(pa.large_string()) for piece in pieces])
        redacted, found = self._engine.redact_strings(combined)
        counts.update(found)
        offsets = np.cumsum([0] + [len(piece) for piece in pieces])
        replacements = iter(
            redacted.slice(start, end - start).cast(piece.type)
            for piece, start, end in zip(pieces, offsets[:-1], offsets[1:])
        )
        out = []
        for batch, (names, reuse) in zip(batches, plans):
            columns = list(batch.columns)
            for name in names:
                index = batch.schema.get_field_index(name)
                if name == "messages" and reuse is not None:
                    prompt = columns[batch.schema.get_field_index("prompt")]
                    response = columns[batch.schema.get_field_index("response")]
                    columns[index] = _redact_column(batch.column(index), reuse.replacer(replacements, prompt, response))
                    counts.update(reuse.reused_counts(prompt, response, self))
                else:
                    columns[index] = _redact_column(batch.column(index), lambda _: next(replacements))
            out.append(pa.RecordBatch.from_arrays(columns, schema=batch.schema))
        return out, counts


class _MessageReuse:
    """Which message contents of a batch equal their row's prompt (first message) or
    response (last message), so the engine scans them once (see Redactor.redact_batches)."""

    def __init__(self, batch: pa.RecordBatch, first_rows, last_rows, from_prompt, from_response, content_call: int) -> None:
        self.batch = batch
        self.content_call = content_call  # which of the struct's text fields _redact_column visits as content
        self.first_rows, self.last_rows = first_rows, last_rows  # rows whose first / last message is reused
        self.from_prompt, self.from_response = from_prompt, from_response  # masks over the content values
        self.reused = np.logical_or(from_prompt, from_response)

    @classmethod
    def plan(cls, batch: pa.RecordBatch, names: list[str]) -> "_MessageReuse | None":
        if not {"messages", "prompt", "response"} <= set(names):
            return None
        messages = batch.column("messages")
        kind = messages.type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not pa.types.is_struct(kind.value_type):
            return None
        if kind.value_type.get_field_index("content") < 0:
            return None
        prompt, response = batch.column("prompt"), batch.column("response")
        if not all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in (prompt, response)):
            return None
        offsets = pc.subtract(messages.offsets, messages.offsets[0]).to_numpy(zero_copy_only=False)
        lengths = np.diff(offsets)
        if messages.null_count:
            lengths = np.where(messages.is_null().to_numpy(zero_copy_only=False), 0, lengths)
        rows = np.flatnonzero(lengths > 0)
        content = _list_child_range(messages).field(kind.value_type.get_field_index("content"))
        if len(rows) == 0 or content.type != prompt.type or content.type != response.type:
            return None
        first, last = offsets[:-1][rows], offsets[1:][rows] - 1

        def equal_at(positions: np.ndarray, column: pa.Array) -> np.ndarray:
            values = column if len(rows) == len(column) else column.take(pa.array(rows))
            same = pc.fill_null(pc.equal(content.take(pa.array(positions)), values), False)
            return same.to_numpy(zero_copy_only=False)

        first_same = equal_at(first, prompt)
        last_same = np.logical_and(equal_at(last, response), last != first)
        from_prompt = np.zeros(len(content), dtype=bool)
        from_prompt[first[first_same]] = True
        from_response = np.zeros(len(content), dtype=bool)
        from_response[last[last_same]] = True
        if not (first_same.any() or last_same.any()):
            return None
        text_fields = [field.name for field in kind.value_type if field.name in MESSAGE_TEXT_FIELDS]
        return cls(batch, rows[first_same], rows[last_same], from_prompt, from_response, text_fields.index("content"))

    def _content_hook(self, on_content: Callable[[pa.Array], pa.Array], on_other: StringRedactor) -> StringRedactor:
        # _redact_column visits a message struct's text fields in the struct's order.
        calls = iter(range(len(MESSAGE_TEXT_FIELDS)))

        def hook(array: pa.Array) -> pa.Array:
            return on_content(array) if next(calls) == self.content_call else on_other(array)

        return hook

    def collector(self, collect: StringRedactor) -> StringRedactor:
        def on_content(content: pa.Array) -> pa.Array:
            collect(content.filter(pa.array(~self.reused)))
            return content

        return self._content_hook(on_content, collect)

    def replacer(self, replacements: Iterator[pa.Array], prompt: pa.Array, response: pa.Array) -> StringRedactor:
        def on_content(content: pa.Array) -> pa.Array:
            scanned = next(replacements)
            result = pc.replace_with_mask(content, pa.array(~self.reused), scanned)
            if self.from_prompt.any():
                result = pc.replace_with_mask(
                    result, pa.array(self.from_prompt), prompt.take(pa.array(self.first_rows)).cast(content.type)
                )
            if self.from_response.any():
                result = pc.replace_with_mask(
                    result, pa.array(self.from_response), response.take(pa.array(self.last_rows)).cast(content.type)
                )
            return result

        return self._content_hook(on_content, lambda _: next(replacements))

    def reused_counts(self, prompt: pa.Array, response: pa.Array, redactor: "Redactor") -> collections.Counter:
        """Placeholders the reused contents gained, as a scan of them would have counted."""
        counts: collections.Counter = collections.Counter()
        for redacted, original, rows in (
            (prompt, self.batch.column("prompt"), self.first_rows),
            (response, self.batch.column("response"), self.last_rows),
        ):
            if len(rows):
                mask = np.zeros(len(original), dtype=bool)
                mask[rows] = True
                counts.update(redactor.placeholder_gains(original, redacted, pa.array(mask)))
        return counts
