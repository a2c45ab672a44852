"""Ansible's host patterns (`--limit`, `--host`), evaluated the way ansible-core 2.19 does.

Behaviour follows ansible/inventory/manager.py (split_host_pattern, order_patterns,
_evaluate_patterns, _match_one_pattern, _split_subscript, _apply_subscript, _enumerate_matches)
and group.py (Group.get_hosts), so the same `--limit` selects the same hosts in fleet and in
Ansible. Deliberate differences, all stricter:
- a term that matches no host or group is an error (Ansible warns and ignores it);
- a pattern that names nothing (empty, only separators) is an error (Ansible selects nothing);
- an empty result is an error; there is no implicit localhost.
The result is a set: callers keep inventory order (Ansible lists hosts in pattern order).

Pure functions over host and group names; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from fleet.errors import InventoryError

__all__ = ["GroupLayout", "PatternSpace", "ansible_group_hosts", "select_names", "split_pattern"]

ALL = "all"
UNGROUPED = "ungrouped"


@dataclass(frozen=True)
class GroupLayout:
    """One group as its source declares it: the order Ansible walks for subscripts."""

    hosts: tuple[str, ...]  # direct members, in source order
    children: tuple[str, ...]  # child groups, in the order the source links them


@dataclass(frozen=True)
class PatternSpace:
    """What patterns are matched against: hosts in inventory order; every group with its
    hosts in Ansible's order (Group.get_hosts), groups in Ansible's order."""

    hosts: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]


# --- splitting (split_host_pattern) --------------------------------------------------------

# Host ranges as Ansible's address parser accepts them: [1:3], [a:c], [0:10:2], hex in IPv6.
_NUM_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_V4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUM_RANGE})"
_V6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_V4_TAIL = rf"(?:{_V4}\.){{3}}{_V4}"
_IPV4 = re.compile(rf"^{_V4_TAIL}$", re.I)
_V6_DOTTED = rf"(?:{_V6}\.){{3}}{_V6}"  # Ansible writes the IPv4 tail of IPv6 with hex parts
# Every way to write 1:2:3:4:5:6:7:8 with '::' shortening, and the IPv4-in-IPv6 forms.
_IPV6 = re.compile(
    "^(?:"
    + "|".join(
        [
            rf"(?:{_V6}:){{7}}{_V6}",
            rf"(?:{_V6}:){{1,6}}:",
            *(rf"(?:{_V6}:){{{n}}}(?::{_V6}){{1,{7 - n}}}" for n in range(1, 6)),
            rf"(?:{_V6}:){{6}}(?::{_V6})",
            rf":(?::{_V6}){{1,6}}",
            rf"{_V6}?::",
            rf"(?:0:){{6}}{_V6_DOTTED}",
            rf"::(?:ffff:)?{_V6_DOTTED}",
            rf"(?:0:){{5}}ffff:{_V6_DOTTED}",
        ]
    )
    + ")$",
    re.I,
)
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I)
_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
# Without commas, ':' separates terms except inside a [...] expression; whitespace separates too.
_COLON_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def _is_address(text: str) -> bool:
    """True if Ansible's parse_address(text, allow_ranges=True) accepts it: a host name,
    IPv4 or IPv6 address, maybe with ranges and a port. Such a text is one pattern term."""
    for port_form in (_BRACKETED_PORT, _HOST_PORT):  # applied in turn, like Ansible
        found = port_form.match(text)
        if found:
            text = found[1]
    return any(form.match(text) for form in (_IPV4, _IPV6, _HOSTNAME))


def split_pattern(text: str) -> list[str]:
    """Split one pattern into terms as Ansible does: on ',' when there is one; else the whole
    text if it reads as one address (IPv6, host range); else on ':' and whitespace outside
    [...]. Terms are stripped; empty ones dropped."""
    if "," in text:
        parts = text.split(",")
    elif _is_address(text):
        parts = [text]
    else:
        parts = _COLON_TERM.findall(text)
    return [part.strip() for part in parts if part.strip()]


# --- groups in Ansible's order ---------------------------------------------------------------


def _ordered_unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def ansible_group_hosts(
    hosts: Sequence[str], layout: Mapping[str, GroupLayout]
) -> dict[str, tuple[str, ...]]:
    """Every group's hosts in the order Ansible's Group.get_hosts() returns them, groups in
    Ansible's order ('all', 'ungrouped', then as first declared).

    Ansible's reconcile step is applied: groups no group lists as a child become children of
    'all' after its declared ones; hosts in no group but 'all' join 'ungrouped'. get_hosts walks
    the group, its children, then breadth-first their children; Ansible walks each level from a
    set, so where two groups of one level both have children the order between those children
    varies from run to run in Ansible itself; fleet takes them in the order reached.
    """
    names = _ordered_unique([ALL, UNGROUPED, *layout])
    children = {g: list(layout[g].children) if g in layout else [] for g in names}
    direct = {g: list(layout[g].hosts) if g in layout else [] for g in names}
    children[ALL] = _ordered_unique([UNGROUPED, *children[ALL]])
    has_parent = {child for kids in children.values() for child in kids}
    children[ALL] += [g for g in names if g != ALL and g not in has_parent]

    grouped = {h for g in names if g not in (ALL, UNGROUPED) for h in direct[g]}
    in_ungrouped = [h for h in direct[UNGROUPED] if h not in grouped]
    direct[UNGROUPED] = _ordered_unique([*in_ungrouped, *(h for h in hosts if h not in grouped)])

    result: dict[str, tuple[str, ...]] = {}
    for name in names:
        walk = [name, *children[name]]
        seen = set(walk)
        level = walk
        while level:
            reached = _ordered_unique(c for g in level for c in children[g] if c not in seen)
            seen.update(reached)
            walk += reached
            level = reached
        result[name] = tuple(_ordered_unique(h for g in walk for h in direct[g]))
    return result


# --- matching ------------------------------------------------------------------------------

# A trailing [n], [-n], [x:y], [x:] or [x-y] is a subscript; any other [...] stays a glob class.
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_GLOB_CHARS = (".", "?", "*", "[")


def _split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    """The term without its subscript, and (start, end) with end inclusive and -1 for an
    open end, or None when there is no subscript. A regex never has one."""
    if term.startswith("~"):
        return term, None
    found = _SUBSCRIPT.match(term)
    if found is None:
        return term, None
    expr, index, start, _sep, end = found.groups()
    if index is not None:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def _apply_subscript(
    matched: list[str], subscript: tuple[int, int | None] | None, term: str, source: str
) -> list[str]:
    if not matched or subscript is None:
        return matched
    start, end = subscript
    # As in Ansible, an end of 0 ("[2:0]") means the single host at start.
    if end:
        last = len(matched) - 1 if end == -1 else end
        return matched[start : last + 1]
    if not -len(matched) <= start < len(matched):
        raise InventoryError(
            f"{source}: pattern '{term}': index {start} is out of range "
            f"(it matches {len(matched)} host(s) before the subscript)"
        )
    return [matched[start]]


def _matcher(expr: str, source: str) -> re.Pattern[str] | None:
    """A compiled regex for '~regex' (matched at the start only, like re.match); None: glob."""
    if not expr.startswith("~"):
        return None
    try:
        return re.compile(expr[1:])
    except re.error as exc:
        raise InventoryError(
            f"{source}: pattern '{expr}' is not a valid regular expression: {exc}"
        ) from None


def _match_term(term: str, space: PatternSpace, source: str) -> list[str]:
    """Hosts one term (without '!'/'&') matches, Ansible's list before deduplication."""
    expr, subscript = _split_subscript(term)
    regex = _matcher(expr, source)

    def hit(name: str) -> bool:
        return bool(regex.match(name)) if regex is not None else fnmatchcase(name, expr)

    groups = [g for g in space.groups if hit(g)]
    matched = [h for g in groups for h in space.groups[g]]
    # A name that is a group does not also match hosts, unless it is a regex or a glob.
    if not groups or regex is not None or any(c in expr for c in _GLOB_CHARS):
        matched += [h for h in space.hosts if hit(h)]
    if not matched and not groups:
        raise InventoryError(f"{source}: pattern '{term}' matches no host or group")
    return _apply_subscript(matched, subscript, term, source)


def select_names(texts: Sequence[str], space: PatternSpace, source: str) -> set[str]:
    """Names of the hosts the patterns select (several patterns are a union, like ',').

    Plain terms first, then '&' terms, then '!' terms; only '&'/'!' alone start from 'all'.
    Every term is matched before combining, so a typo is reported even when an earlier term
    already emptied the selection.
    """
    plain: list[str] = []
    both: list[str] = []
    minus: list[str] = []
    for text in texts:
        terms = split_pattern(text)
        # With a comma, Ansible keeps a lone ':' as a term (" ,: "): it still names nothing.
        if not any(term.strip(":") for term in terms):
            raise InventoryError(f"{source}: pattern '{text}' names no host or group")
        for term in terms:
            {"&": both, "!": minus}.get(term[0], plain).append(term)

    host_set = set(space.hosts)

    def match(term: str) -> set[str]:
        if term in host_set:  # Ansible's shortcut: a plain host name is that host alone
            return {term}
        bare = term[1:] if term[0] in "&!" else term
        if not bare:
            raise InventoryError(f"{source}: pattern '{term}' names no host or group")
        return set(_match_term(bare, space, source))

    plain_sets = [match(t) for t in plain] if plain else [match(ALL)]
    both_sets = [match(t) for t in both]
    minus_sets = [match(t) for t in minus]
    selected: set[str] = set().union(*plain_sets)
    for names in both_sets:
        selected &= names
    for names in minus_sets:
        selected -= names
    if not selected:
        raise InventoryError(f"{source}: pattern '{','.join(texts)}' selects no hosts")
    return selected
