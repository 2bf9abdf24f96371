"""PatternSet: hyperscan prunes, Python's regex semantics decide, line by line."""

from __future__ import annotations

import random
import re
import time

import pytest
from suture.engine.playbook import LogCondition, Where
from suture.sidecar.matching import PatternSet
from suture.sidecar.pattern_prefilter import FOLD_PARTNERS

AT = Where(file="test.yaml", line=1, path="when.log")

PATTERNS = [
    r"429 .*Too Many Requests",
    r"\b429\b.*Too Many|rate limit(ed)? exceeded",
    r"(?i)timeout after (?P<seconds>\d+)s",
    r"^ERROR\b",
    r"\bERROR$",
    r"\AINFO",
    r"done\Z",
    r"[A-Z]{3,}_[A-Z]+",
    r"user=(?P<user>\w+) denied",
    r"(?<=id=)\d{3,}",
    r"(?<!no )match(?!ed)",
    r"(\w)\1{2}",
    r"x{,2}y{2}",
    r"x{d}",
    r"\s\S\s",
    r"[^\W\d]\d",
    r"(?a)\w+é",
    r"(?i)straße|KELVIN",
    r"(?i)[a-k]{4}",
    r"(?i)İ|ı",
    r"café|naïve",
    r"\x00",
    r"[\x00-\x08]",
    r"\N{BULLET} \w+",
    r"\uFFFD{2}",
    r"(?s)a.b",
    r"(?m)^b",
    r"a|b|c|d|e|f",
    r"(?>ab|a)c",
    r"a*+b",
    r"(a)?(?(1)b|c)d",
    r"\d+\.\d+\.\d+\.\d+",
    r'"(?:GET|POST) (?P<path>/[^ "]*)[^"]*" 5\d\d',
    r"[^\x00-\x7f]",
    r"\x1c",
    r"\s{3}",
]
WORDS = ["ERROR", "INFO", "done", "429", "Too Many Requests", "rate limited exceeded", "timeout after 30s",
         "TIMEOUT AFTER 5S", "user=alice denied", "user=bob_2 denied", "id=12345", "no match", "match", "matched",
         "aaa", "xyy", "x{d}", "café", "naïve", "straße", "STRASSE", "\u212aELVIN", "İ", "ı", "i", "\u2022 bullet",
         "\ufffd\ufffd", "a\nb", "\x00", "\x07", "\x1c", "\u0301", "ab", "c", "abc", "bd", "d", "10.0.0.1", "Ωmega9",
         '"GET /api/orders?id=1 HTTP/1.1" 502', '"POST /x" 200', "\t", "   ", "日本語", "😀", "é"]


def conditions(patterns: list[str]) -> list[LogCondition]:
    return [LogCondition(source="app", pattern=p, at_least=1, within=60.0,
                         group_by=tuple(re.compile(p).groupindex), at=AT) for p in patterns]


def reference(conds: list[LogCondition], line: str) -> list[tuple[str, dict[str, str]]]:
    """One plain ``re.search`` per pattern: what PatternSet must answer."""
    out = []
    for c in conds:
        m = re.search(c.pattern, line)
        if m is not None:
            out.append((c.signal, {n: m.group(n) or "" for n in c.group_by}))
    return out


def varied_lines(n: int = 400, seed: int = 3) -> list[str]:
    rnd = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = [rnd.choice(WORDS) for _ in range(rnd.randint(0, 6))]
        line = rnd.choice([" ", "", "  ", "-"]).join(parts).replace("\n", " ")
        if rnd.random() < 0.05:
            line = line + " " + "y" * rnd.randint(1000, 5000)  # long lines
        if rnd.random() < 0.1:  # invalid UTF-8, decoded as the tailer does
            line = (line.encode() + bytes([0xC3, 0x28, 0xFF]) + b" ERROR").decode("utf-8", errors="replace")
        lines.append(line)
    return lines


@pytest.fixture(scope="module")
def pattern_set() -> PatternSet:
    return PatternSet(conditions(PATTERNS))


def test_match_equals_a_plain_re_search_per_pattern(pattern_set: PatternSet) -> None:
    """match() answers exactly what one re.search per pattern answers, labels included."""
    conds = conditions(PATTERNS)
    for line in varied_lines():
        assert reference(conds, line) == pattern_set.match(line), repr(line)


def test_scan_finds_exactly_the_lines_the_reference_finds(pattern_set: PatternSet) -> None:
    """scan() reports every matching line of a block with its hits, and no other line."""
    conds = conditions(PATTERNS)
    lines = varied_lines(seed=4)
    block = "\n".join(lines).encode("utf-8") + b"\n"
    expected = [(line, reference(conds, line)) for line in lines if reference(conds, line)]
    found = [(block[s:e].decode("utf-8", errors="replace"), hits) for s, e, hits in pattern_set.scan(block)]
    assert expected == found


def test_scan_offsets_index_the_callers_block_when_it_is_not_utf8() -> None:
    """With invalid UTF-8 in the block, offsets still index the bytes the caller passed."""
    ps = PatternSet(conditions([r"ERROR (?P<code>\d+)"]))
    block = b"ok \xff\xfe\n\xc3\x28 ERROR 42 \xe2\x82\n\xf0 fine\nERROR 7\n"
    found = [(block[s:e], hits[0][1]) for s, e, hits in ps.scan(block)]
    assert found == [(b"\xc3\x28 ERROR 42 \xe2\x82", {"code": "42"}), (b"ERROR 7", {"code": "7"})]


def test_lines_that_match_nothing_are_not_reported() -> None:
    """A block of non-matching lines yields nothing and no confirmation work."""
    ps = PatternSet(conditions([r"429 .*Too Many Requests", r"deadlock detected"]))
    block = b"".join(b"2026-11-25T10:00:%02dZ INFO GET /orders 200\n" % (i % 60) for i in range(5000))
    assert ps.scan(block) == []
    assert ps.stats == {"lines_scanned": 5000, "hits_confirmed": 0, "prefilter_rejects": 0, "timeouts": 0}


def test_group_by_labels_are_extracted() -> None:
    """Each hit carries the pattern's group_by groups (an unmatched group is '')."""
    cond = LogCondition(source="app", pattern=r"(?P<method>GET|POST) (?P<path>/\S+)(?: (?P<code>\d{3}))?",
                        at_least=1, group_by=("path", "code"), at=AT)
    ps = PatternSet([cond])
    assert [(cond.signal, {"path": "/orders", "code": "503"})] == ps.match("POST /orders 503 in 2ms")
    block = b"noise\nGET /health\n"
    assert [(6, 17, [(cond.signal, {"path": "/health", "code": ""})])] == ps.scan(block)


@pytest.mark.parametrize(
    ("pattern", "line", "engine"),
    [
        (r"(?<=user=)\w+ denied", "user=alice denied", "hyperscan"),
        (r"(\w+) \1 again", "hello hello again", "hyperscan"),
        (r"(?=x)", "xyz", "re: "),
        (r"^$", "", "re: "),
    ],
)
def test_lookarounds_backreferences_and_empty_matches_still_work(pattern: str, line: str, engine: str) -> None:
    """Constructs hyperscan cannot run exactly are prefiltered or searched per line; engines() says which."""
    cond = conditions([pattern])[0]
    ps = PatternSet([cond])
    assert [(cond.signal, {})] == ps.match(line)
    assert ps.match(line.replace("x", "q").replace("again", "once").replace("denied", "ok") or "z") == []
    assert ps.engines()[cond.signal].startswith(engine)
    assert [(0, len(line.encode()), [(cond.signal, {})])] == ps.scan(line.encode() + b"\n")


def test_catastrophic_pattern_returns_within_the_timeout() -> None:
    """(a+)+$ on 10 KiB of 'a' then '!' gives up (counted as a timeout) instead of hanging."""
    ps = PatternSet(conditions([r"(a+)+$"]), timeout=0.05)
    line = "a" * 10240 + "!"
    began = time.perf_counter()
    assert ps.match(line) == []
    assert ps.scan(line.encode() + b"\n") == []
    assert time.perf_counter() - began < 2.0
    assert ps.stats["timeouts"] == 2


def test_a_pattern_never_matches_across_lines() -> None:
    """In block mode, foo on one line and bar on the next do not make foo[^!]*bar match."""
    ps = PatternSet(conditions([r"foo[^!]*bar", r"foo\s+bar"]))
    assert ps.scan(b"a foo and\nthen bar\nfoo\n\nbar\n") == []
    assert [len(ps.match(line)) for line in ("a foo and", "then bar")] == [0, 0]


@pytest.mark.parametrize(
    ("pattern", "line"),
    [
        (r"x{d}", "xd"),  # regex would read {d} as fuzzy matching
        (r"a\sb", "a\x1cb"),  # re's \s includes the information separators
        (r"e\w", "e\u0301"),  # a combining mark is no \w for re
        (r"(?i)i", "\u0131"),  # re folds dotless i onto i
        (r"(?i)\u212a", "k"),  # the Kelvin sign folds onto k
        (r"(?ai)\u212a", "k"),  # ... but not under ASCII
        (r"end\Z", "the end"),  # \Z is the end of the line, not of the block
        (r"x{,2}!", "xx!"),
        (r"\bword\b", "a word."),
        (r"\B", ""),
    ],
)
def test_python_semantics_where_the_engines_read_a_pattern_differently(pattern: str, line: str) -> None:
    """Where hyperscan, regex and re disagree on syntax or tables, the answer is re's."""
    cond = conditions([pattern])[0]
    ps = PatternSet([cond])
    expected = re.search(pattern, line) is not None
    assert expected == bool(ps.match(line))
    found = ps.scan(b".\n" + line.encode() + b"\n.\n")
    assert expected == any(start == 2 for start, _end, _hits in found)  # the middle line


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_posix_looking_classes_mean_what_re_means() -> None:
    """[[:alpha:]] is re's odd set of '[', ':', 'a', ..., not a POSIX class."""
    ps = PatternSet(conditions([r"[[:alpha:]]"]))
    assert (re.search(r"[[:alpha:]]", ":]") is not None) == bool(ps.match(":]"))
    assert (re.search(r"[[:alpha:]]", "b]") is not None) == bool(ps.match("b]"))


def test_fold_partner_table_is_complete() -> None:
    """The non-ASCII characters re folds onto ASCII letters are exactly FOLD_PARTNERS."""
    non_ascii = "".join(chr(c) for c in range(0x80, 0x10000) if not 0xD800 <= c < 0xE000)
    found = {letter: "".join(re.findall(f"(?i){letter}", non_ascii)) for letter in "abcdefghijklmnopqrstuvwxyz"}
    assert {letter: chars for letter, chars in found.items() if chars} == FOLD_PARTNERS


def test_engines_names_hyperscan_for_ordinary_patterns(pattern_set: PatternSet) -> None:
    """Every pattern that must consume a character runs on hyperscan; one that need not falls back."""
    assert {"hyperscan"} == set(pattern_set.engines().values())
    engines = list(PatternSet(conditions([r"429 .*Too Many", r"x*"])).engines().values())
    assert engines[0] == "hyperscan"
    assert engines[1].startswith("re: it can match an empty string")


def test_stats_count_confirmations_and_rejects() -> None:
    """A hyperscan candidate the real regex refuses is a prefilter reject; a match a confirmed hit."""
    ps = PatternSet(conditions([r"(\w+) \1"]))  # prefiltered without the backreference
    ps.scan(b"hello hello\nhello world\nnothing\n")
    assert ps.stats == {"lines_scanned": 3, "hits_confirmed": 1, "prefilter_rejects": 1, "timeouts": 0}


def test_a_last_line_without_newline_is_scanned() -> None:
    """scan() treats a final unterminated line as a line."""
    ps = PatternSet(conditions([r"ERROR"]))
    assert [(s, e) for s, e, _ in ps.scan(b"ok\r\nERROR")] == [(4, 9)]
    assert ps.scan(b"") == []


def test_large_bounded_repeats_compile_fast_and_stay_exact() -> None:
    """A{0,1000} is widened in the prefilter (fast to compile) while confirmation keeps the bound."""
    began = time.perf_counter()
    ps = PatternSet(conditions([r"a[^']{0,1000}b", r"x\w{1,200}y"]))
    assert time.perf_counter() - began < 2.0
    assert [len(ps.match("a" + "-" * n + "b")) for n in (1000, 1001)] == [1, 0]
    assert [len(ps.match("x" + "w" * n + "y")) for n in (200, 201)] == [1, 0]


def test_a_joined_traceback_matches_a_pattern_when_one_of_its_lines_does():
    """Anchored patterns keep their per-line meaning inside a multi-line observation, and hit once."""
    from suture.engine.playbook import LogCondition, Where

    at = Where(file="t", line=1, path="when.log")
    cond = LogCondition(source="app", pattern=r"^psycopg2\.OperationalError: (?P<why>.+)$", group_by=("why",),
                        at_least=1, within=60.0, at=at)
    tb = ("Traceback (most recent call last):\n  File \"/app/db.py\", line 3, in connect\n"
          "psycopg2.OperationalError: could not connect to server")
    ps = PatternSet([cond])
    assert ps.match(tb) == [(cond.signal, {"why": "could not connect to server"})]
