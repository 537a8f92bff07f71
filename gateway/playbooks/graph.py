"""The control flow of a playbook as a graph of step indexes, and the analyses run on it.

Edges come from `next`, a choice's `goto`, and falling through to the following step. An
ask's edges exist per choice because a choice can capture an answer on its way, which is what
the "captured on every path" analysis for `{answers.x}` needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.playbooks.steps import END, AnyStep, AskStep, CallStep, SendStep, WaitStep


@dataclass(frozen=True)
class Edge:
    """A possible move from step `source` to step `target` (None: the play ends)."""

    source: int
    target: int | None
    path: str | None  # the field that makes the move; None when it falls through
    capture: str | None = None  # the answer key captured on the way, if any


def _continuation(
    steps: Sequence[AnyStep], index_of: Mapping[str, int], i: int, capture: str | None = None
) -> list[Edge]:
    step = steps[i]
    target = getattr(step, "next", None)
    if target is None:
        following = i + 1 if i + 1 < len(steps) else None
        return [Edge(i, following, None, capture)]
    path = f"steps[{i}].next"
    if target == END:
        return [Edge(i, None, path, capture)]
    if target in index_of:
        return [Edge(i, index_of[target], path, capture)]
    return []  # unknown target: reported by validation, not followed


def edges(steps: Sequence[AnyStep], index_of: Mapping[str, int]) -> list[Edge]:
    """Every edge of the playbook; references to unknown steps are left out."""
    result: list[Edge] = []
    for i, step in enumerate(steps):
        if isinstance(step, SendStep | CallStep | WaitStep):
            result.extend(_continuation(steps, index_of, i))
        elif isinstance(step, AskStep):
            for j, choice in enumerate(step.choices):
                if choice.outcome is not None:
                    continue  # the play ends here
                if choice.goto is None:
                    result.extend(_continuation(steps, index_of, i, choice.capture))
                    continue
                path = f"steps[{i}].choices[{j}].goto"
                if choice.goto == END:
                    result.append(Edge(i, None, path, choice.capture))
                elif choice.goto in index_of:
                    result.append(Edge(i, index_of[choice.goto], path, choice.capture))
        # goto and outcome steps end the play: no edges
    return result


def successors(all_edges: Sequence[Edge]) -> dict[int, list[Edge]]:
    """Edges grouped by source."""
    grouped: dict[int, list[Edge]] = {}
    for edge in all_edges:
        grouped.setdefault(edge.source, []).append(edge)
    return grouped


def reachable(count: int, all_edges: Sequence[Edge]) -> set[int]:
    """Indexes of the steps a play can reach from the first step."""
    if count == 0:
        return set()
    out = successors(all_edges)
    seen = {0}
    stack = [0]
    while stack:
        for edge in out.get(stack.pop(), []):
            if edge.target is not None and edge.target not in seen:
                seen.add(edge.target)
                stack.append(edge.target)
    return seen


def captured_on_every_path(count: int, all_edges: Sequence[Edge]) -> dict[int, frozenset[str]]:
    """For each reachable step, the answer keys captured on every path from the start to it.

    A forward "must" data-flow analysis: start with everything captured (except at the first
    step) and intersect over incoming edges until nothing changes.
    """
    live = reachable(count, all_edges)
    universe = frozenset(e.capture for e in all_edges if e.capture is not None)
    known: dict[int, frozenset[str]] = {i: universe for i in live}
    known[0] = frozenset()
    incoming: dict[int, list[Edge]] = {}
    for edge in all_edges:
        if edge.target is not None and edge.source in live:
            incoming.setdefault(edge.target, []).append(edge)
    changed = True
    while changed:
        changed = False
        for target in sorted(live):
            sets = [
                known[e.source] | ({e.capture} if e.capture else frozenset())
                for e in incoming.get(target, [])
            ]
            if target == 0:
                sets.append(frozenset())
            value = frozenset.intersection(*sets) if sets else frozenset()
            if value != known[target]:
                known[target] = value
                changed = True
    return known


def cycles(count: int, all_edges: Sequence[Edge]) -> list[list[int]]:
    """Strongly connected components that contain a cycle, as sorted step indexes (Tarjan)."""
    out = successors(all_edges)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0

    def visit(root: int) -> None:
        # Iterative, so a long generated playbook can't hit the recursion limit.
        nonlocal counter
        work: list[tuple[int, int]] = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, position = work[-1]
            targets = [e.target for e in out.get(node, []) if e.target is not None]
            if position < len(targets):
                work[-1] = (node, position + 1)
                nxt = targets[position]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                self_loop = any(e.target == node for e in out.get(node, []))
                if len(component) > 1 or self_loop:
                    found.append(sorted(component))

    for start in range(count):
        if start not in index:
            visit(start)
    return sorted(found)


def first_sms_steps(steps: Sequence[AnyStep], all_edges: Sequence[Edge]) -> list[int]:
    """Indexes of the SMS sends and asks that can be the first text a lead gets in a play."""
    if not steps:
        return []
    out = successors(all_edges)
    seen = {0}
    stack = [0]
    found: set[int] = set()
    while stack:
        i = stack.pop()
        step = steps[i]
        if isinstance(step, AskStep) or (isinstance(step, SendStep) and step.channel == "sms"):
            found.add(i)
            continue  # anything after this step is no longer the first text
        for edge in out.get(i, []):
            if edge.target is not None and edge.target not in seen:
                seen.add(edge.target)
                stack.append(edge.target)
    return sorted(found)
