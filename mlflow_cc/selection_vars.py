"""Explain a selection of models with at most two variables (SPEC section 6, R4; pure).

Selection Details charts a metric over the selected models with one variable on the x
axis and maybe a second as bar colour. The variables come from the provenance tree, as
in the paper (Compress and Compare, sec. 4.1, "minimum-cost set of variables"):

* kinds and costs: an operation's parameter value (1), presence or absence of an
  operation on the path (2), the type of operation applied at a point (5), a sequence
  of cumulative operations (6); "which base model" is the parameter of a synthetic
  operation from a synthetic root to the root models (1);
* the tree is cut to the selection and its ancestors, and pointers walk down from the
  synthetic root, one column of variables per step; the cheapest complete walk wins;
* then single-valued variables are dropped and the rest simplified (cumulative presence
  flags become one sequence; a variable fixed by another is folded into it; small
  domains are merged) until at most two remain, or the user must refine the selection.

The paper searches every walk, which is exponential in the tree's depth. Here the walk is
a shortest path over search states (the set of pointers still walking), memoised per
state, tried greedy move first, under a work budget: within SEARCH_BUDGET pointer visits
the answer is the cheapest walk; past it no new alternatives are opened and what is left
is finished greedily (cheapest move, preferring presence flags for operations the other
pointers do not meet further down, so "Calibrate yes/no" lines Quantize up). Costs, for
m selected models, a cut tree of n nodes and depth d, p <= m pointers per state:

* cut tree and chain tables O(n); search O(SEARCH_BUDGET + d * d * p) (the budget, then at
  most d open frames each finishing one greedy walk of d steps);
* replaying the winning walk O(m * d) per column of variables (O(m * d) columns at most);
* simplification O(v^2 * m log m) for v variables, pair counts cached, and skipped when
  the distinct rows cannot fit two variables.

Measured with benchmarks/selection.py: about 50-100 ms for 300 models of a 5,000-model
forest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlflow_cc.lineage import Forest

COST_PARAM = 1
COST_BASE = 1
COST_PRESENCE = 2
COST_OP_TYPE = 5
COST_SEQUENCE = 6

#: Offer one presence candidate per operation name only when there are this few names.
MAX_PRESENCE_NAMES = 4
#: Token visits spent on the exact search before the rest is finished greedily.
SEARCH_BUDGET = 20_000
#: Deepest recursion of the exact search; deeper walks are finished greedily.
MAX_SEARCH_DEPTH = 150
#: Largest number of values of a variable made by merging two small ones.
MAX_MERGED_LEVELS = 6
#: Longest chain the sequence candidate considers (bounds memory on very deep chains).
MAX_CHAIN = 64

#: The synthetic operation from the synthetic root to a root model.
_BASE_OP = "\x00base"
_BASE_NAME = "base model"
_MISSING = ("\x00missing",)  # a parameter one operation has and another lacks
_NONE_LABEL = "none"


@dataclass(frozen=True)
class Variable:
    """One way the selected models differ.

    ``levels`` are the values met, in display order (numbers numerically, ``False`` before
    ``True``, ``None`` = "not applicable" first, sequences by length); ``labels`` are their
    display texts, one per level.
    """

    name: str  # e.g. "prune.sparsity", "calibrate", "operation after prune", "base model", "recipe"
    kind: str  # "param" | "presence" | "op_type" | "sequence" | "base" | "merged"
    cost: int
    levels: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()

    def label(self, value: Any) -> str:
        """Display text of ``value`` (one of :attr:`levels`)."""
        for level, text in zip(self.levels, self.labels):
            if level == value and type(level) is type(value):
                return text
        return _plain_label(value)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "cost": self.cost,
                "levels": list(self.levels), "labels": list(self.labels)}


@dataclass
class Explanation:
    """How the selected models differ, ready for a grouped bar chart."""

    variables: list[Variable]  # after simplification, single-valued dropped; walk order
    values: dict[str, dict[str, Any]]  # run_id -> {variable name: value}, every selected model
    x: Variable | None  # chart x axis (None when nothing varies)
    color: Variable | None  # second variable as bar colour, or None
    comparable: bool  # False when more than two variables remain -> Refine Comparison
    refine_options: dict[str, list[Any]]  # variable name -> its levels (only when not comparable)
    #: What all selected models share, e.g. {"prune.method": "global_magnitude"} (chart subtitle).
    constants: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (values are bool, int, float, str or None)."""
        return {"variables": [v.to_dict() for v in self.variables], "values": self.values,
                "x": self.x.name if self.x else None, "color": self.color.name if self.color else None,
                "comparable": self.comparable, "refine_options": self.refine_options,
                "constants": self.constants}


def refine(explanation: Explanation, choices: dict[str, Any]) -> list[str]:
    """Run ids whose values match ``choices`` (variable name -> a value or a list of values).

    The Refine Comparison panel narrows the selection with this, then explains it again.
    """
    allowed = {k: (v if isinstance(v, (list, tuple, set, frozenset)) else [v]) for k, v in choices.items()}
    return [rid for rid, vals in explanation.values.items()
            if all(_member(vals.get(k), opts) for k, opts in allowed.items())]


def explain_selection(forest: Forest, selected: Iterable[str]) -> Explanation:
    """Explain how the ``selected`` models differ with as few, and as cheap, variables as possible.

    Ids not in ``forest`` are ignored (a selection can outlive a refresh).
    """
    rows = sorted({rid for rid in selected if rid in forest.nodes})
    if not rows:
        return Explanation([], {}, None, None, True, {})
    tree = _CutTree(forest, rows)
    moves = _Search(tree).best_walk()
    constants: dict[str, Any] = {}
    raw = _replay(tree, moves, constants)
    variables = _simplify([v for v in raw if len(_distinct(v.values)) > 1])
    _unique_names(variables)
    final = [v.public() for v in variables]
    values = {tree.ids[r]: {v.name: v.values[i] for v in variables} for i, r in enumerate(tree.rows)}
    comparable = len(final) <= 2
    x, color = _axes(variables, final) if comparable else (None, None)
    refine_options = {} if comparable else {v.name: list(v.levels) for v in final}
    return Explanation(final, values, x, color, comparable, refine_options, constants)


# --- the cut tree -----------------------------------------------------------------------------

class _CutTree:
    """The selection and its ancestors under a synthetic root (index 0), as flat int arrays."""

    def __init__(self, forest: Forest, selected: list[str]) -> None:
        self.ids: list[str] = [""]
        index: dict[str, int] = {}
        for rid in selected:  # walk up until a node already in the cut tree
            cur: str | None = rid
            while cur is not None and cur not in index:
                index[cur] = len(self.ids)
                self.ids.append(cur)
                cur = forest.nodes[cur].parent_id
        n = len(self.ids)
        self.children: list[list[int]] = [[] for _ in range(n)]
        self.parent = [0] * n
        self.selected = [False] * n
        self.op: list[str] = [_BASE_OP] * n
        self.params: list[dict[str, Any]] = [{} for _ in range(n)]
        roots = [i for i in range(1, n) if forest.nodes[self.ids[i]].parent_id is None]
        base_names = _base_labels(forest, [self.ids[i] for i in roots])
        for i in range(1, n):
            node = forest.nodes[self.ids[i]]
            if node.parent_id is None:
                self.params[i] = {_BASE_NAME: base_names[node.run_id]}
                self.children[0].append(i)
            else:
                self.op[i] = node.operation or "derive"  # the map's name for an unnamed operation
                self.params[i] = {k: _hashable(v) for k, v in node.op_params.items()}
                self.parent[i] = index[node.parent_id]
                self.children[self.parent[i]].append(i)
        for c in self.children:
            c.sort(key=lambda i: self.ids[i])
        for rid in selected:
            self.selected[index[rid]] = True
        self.rows = [index[rid] for rid in selected]
        self.sig = [(self.op[i], tuple(sorted(self.params[i].items()))) for i in range(n)]
        self._chains()

    def _chains(self) -> None:
        """Per node, its subtree as a chain of signatures (or None if it branches)."""
        n = len(self.ids)
        order: list[int] = []
        stack = [0]
        while stack:
            i = stack.pop()
            order.append(i)
            stack.extend(self.children[i])
        self.chain: list[tuple[Any, ...] | None] = [None] * n
        self.chain_sel: list[tuple[int, ...]] = [()] * n  # 1-based positions of selected models
        # Uncapped: whether the subtree is a chain, its length and selected models in it.
        self.chain_len = [0] * n
        self.chain_nsel = [0] * n
        self.ops_below: list[frozenset[str]] = [frozenset()] * n
        for i in reversed(order):
            kids = self.children[i]
            self.ops_below[i] = frozenset({self.op[i]}).union(*(self.ops_below[k] for k in kids))
            own = (1,) if self.selected[i] else ()
            if not kids or (len(kids) == 1 and self.chain_len[kids[0]]):
                tail_len, tail_sel = (self.chain_len[kids[0]], self.chain_nsel[kids[0]]) if kids else (0, 0)
                self.chain_len[i], self.chain_nsel[i] = tail_len + 1, tail_sel + len(own)
            if not kids:
                self.chain[i], self.chain_sel[i] = (self.sig[i],), own
            elif len(kids) == 1 and (tail := self.chain[kids[0]]) is not None and len(tail) < MAX_CHAIN:
                self.chain[i] = (self.sig[i], *tail)
                self.chain_sel[i] = own + tuple(p + 1 for p in self.chain_sel[kids[0]])

    def path(self, i: int) -> list[int]:
        """Nodes from a root model down to ``i`` (the synthetic root left out)."""
        out: list[int] = []
        while i != 0:
            out.append(i)
            i = self.parent[i]
        return out[::-1]


def _base_labels(forest: Forest, roots: list[str]) -> dict[str, str]:
    """Root model names, with a short run id where two roots share a name."""
    names = [forest.nodes[r].name for r in roots]
    seen = Counter(names)
    return {r: (nm if seen[nm] == 1 else f"{nm} ({r[:8]})") for r, nm in zip(roots, names)}


# --- the search over walks ----------------------------------------------------------------------

#: A pointer: (node it sits at, child it heads to). Done pointers are only counted.
Token = tuple[int, int]
#: (pointers still walking, whether some selected model has been reached already).
State = tuple[frozenset[Token], bool]
#: ("shared" | "presence" | "type" | "sequence", operation name or "").
Move = tuple[str, str]


class _Search:
    """Cheapest walk: memoised shortest path over states, greedy past a work budget."""

    def __init__(self, tree: _CutTree) -> None:
        self.tree = tree
        self.memo: dict[State, tuple[int, Move]] = {}
        self.work = 0

    def best_walk(self) -> list[Move]:
        state: State = (frozenset((0, r) for r in self.tree.children[0]), False)
        self._solve(state, 0)
        moves: list[Move] = []
        while state[0]:
            move = self.memo[state][1]
            moves.append(move)
            if move[0] == "sequence":
                break
            state = self._next(state, move)
        return moves

    def _solve(self, state: State, depth: int) -> int:
        """Cost to go from ``state``; the chosen move is left in ``self.memo``.

        Moves are tried greedy pick first, so the first descent is the greedy walk; once the
        budget is spent no further alternatives are opened (each open frame keeps its best).
        """
        if not state[0]:
            return 0
        if state in self.memo:
            return self.memo[state][0]
        if self.work > SEARCH_BUDGET or depth > MAX_SEARCH_DEPTH:
            return self._greedy(state)
        moves = self._moves(state)
        self.work += len(state[0]) * len(moves)
        pick = self._pick(state, moves)
        best: tuple[int, Move] | None = None
        for cost, _, move in [pick, *sorted(m for m in moves if m != pick)]:
            if best is not None and (cost >= best[0] or self.work > SEARCH_BUDGET):
                continue  # cost to go is >= 0: this move cannot win
            total = cost if move[0] == "sequence" else cost + self._solve(self._next(state, move), depth + 1)
            if best is None or total < best[0]:
                best = (total, move)
        assert best is not None
        self.memo[state] = best
        return best[0]

    def _greedy(self, state: State) -> int:
        """Finish a walk one greedy move at a time (iterative), memoising what it sees."""
        trail: list[tuple[State, int, Move]] = []
        while state[0] and state not in self.memo:
            moves = self._moves(state)
            self.work += len(state[0])
            cost, _, move = self._pick(state, moves)
            trail.append((state, cost, move))
            if move[0] == "sequence":
                break
            state = self._next(state, move)
        total = self.memo[state][0] if state[0] and state in self.memo else 0
        for st, cost, move in reversed(trail):
            total += cost
            self.memo[st] = (total, move)
        return total

    def _pick(self, state: State, moves: list[tuple[int, int, Move]]) -> tuple[int, int, Move]:
        """The greedy move: cheapest now, with two looks ahead the immediate cost misses."""
        moves = sorted(moves)
        kinds = {m[2][0] for m in moves}
        names = sum(1 for m in moves if m[2][0] == "presence")
        if "sequence" in kinds and self._chain_steps(state) * COST_PRESENCE > COST_SEQUENCE:
            return next(m for m in moves if m[2][0] == "sequence")  # one flag per step costs more
        if "type" in kinds and (names == 0 or names >= 3):
            return next(m for m in moves if m[2][0] == "type")  # 3+ flags cost more than a type
        return next(m for m in moves if m[2][0] != "sequence")

    def _moves(self, state: State) -> list[tuple[int, int, Move]]:
        """Candidate moves as (cost, alignment penalty, move)."""
        active, any_done = state
        tree = self.tree
        by_op: dict[str, list[int]] = {}
        for _, c in active:
            by_op.setdefault(tree.op[c], []).append(c)
        out: list[tuple[int, int, Move]] = []
        if len(by_op) == 1:
            (op, kids), = by_op.items()
            out.append(((COST_PRESENCE if any_done else 0) + self._param_cost(kids), 0, ("shared", op)))
        else:
            out.append((COST_OP_TYPE + sum(self._param_cost(k) for k in by_op.values()), 0, ("type", "")))
            if len(by_op) <= MAX_PRESENCE_NAMES:
                for op, kids in by_op.items():
                    # Penalise advancing pointers past an operation that others still meet
                    # further down: that would split one operation into two columns.
                    penalty = sum(1 for _, c in active if tree.op[c] != op and op in tree.ops_below[c])
                    out.append((COST_PRESENCE + self._param_cost(kids), penalty, ("presence", op)))
        seq = self._sequence_cost(state)
        if seq is not None:
            out.append((seq, 0, ("sequence", "")))
        return out

    def _param_cost(self, kids: list[int]) -> int:
        """One variable per parameter with more than one value among these operations."""
        seen: dict[str, set[Hashable]] = {}
        for c in kids:
            for k, v in self.tree.params[c].items():
                seen.setdefault(k, set()).add(v)
        cost = 0
        for k, vals in seen.items():
            if len(vals) > 1 or any(k not in self.tree.params[c] for c in kids):
                cost += COST_BASE if k == _BASE_NAME else COST_PARAM
        return cost

    def _sequence_cost(self, state: State) -> int | None:
        """COST_SEQUENCE if every pointer's rest is a prefix of one chain (else None)."""
        active, any_done = state
        tree = self.tree
        if any(n == 0 for n, _ in active):
            return None  # the base step: "which base model" is no operation
        if len(active) == 1:  # one chain left, however long
            (_, c), = active
            if not tree.chain_len[c]:
                return None
            return COST_SEQUENCE if any_done or tree.chain_nsel[c] > 1 else 0
        chains = [tree.chain[c] for _, c in active]
        if any(ch is None for ch in chains):
            return None
        longest = max(chains, key=len)  # type: ignore[arg-type]
        if any(ch != longest[:len(ch)] for ch in chains):  # type: ignore[index,arg-type]
            return None
        lengths = {p for _, c in active for p in self.tree.chain_sel[c]} | ({0} if any_done else set())
        return COST_SEQUENCE if len(lengths) > 1 else 0

    def _chain_steps(self, state: State) -> int:
        return max(self.tree.chain_len[c] for _, c in state[0])

    def _next(self, state: State, move: Move) -> State:
        active, any_done = state
        tree = self.tree
        out: list[Token] = []
        for tok in active:
            c = tok[1]
            if move[0] == "presence" and tree.op[c] != move[1]:
                out.append(tok)  # waits: this operation is absent on its path here
                continue
            out.extend((c, k) for k in tree.children[c])
            any_done = any_done or tree.selected[c]
        return frozenset(out), any_done


# --- replaying the walk over the selected models -----------------------------------------------

@dataclass(eq=False)  # identity hash: a key of the _Counts cache
class _Var:
    """A variable with one value per selected model (row), before it is made public."""

    name: str
    kind: str
    cost: int
    col: int
    values: list[Any]
    op: str = ""  # presence/param: the column it belongs to
    key: str = ""  # param: the parameter
    none_label: str = _NONE_LABEL
    #: Merged variables: display text and sort key per (typed) value.
    texts: dict[tuple[str, Any], str] | None = None
    keys: dict[tuple[str, Any], Any] | None = None
    is_ordinal: bool | None = None

    def sort_key(self, value: Any) -> Any:
        if self.keys is not None:
            return self.keys[_typed(value)]
        if self.kind == "sequence":  # cumulative: order by length
            return 0 if value == _NONE_LABEL else value.count(" → ") + 1
        return _sort_key(value)

    def label(self, value: Any) -> str:
        if self.texts is not None:
            return self.texts[_typed(value)]
        if self.kind == "presence":
            return "yes" if value else "no"
        if value is None:
            return self.none_label
        return _plain_label(value)

    def short(self, value: Any) -> str:
        """This variable's part of a merged label; "" for an absent thing."""
        if self.texts is not None:
            return self.label(value)
        if self.kind == "presence":
            return self.name if value else ""
        if value is None or (self.kind == "sequence" and value == _NONE_LABEL):
            return ""
        if self.kind == "param":
            return f"{self.key}={_plain_label(value)}"
        return self.label(value)

    def ordinal(self) -> bool:
        """Ordered values, which read best on an x axis (numbers, sequences)."""
        if self.is_ordinal is not None:
            return self.is_ordinal
        if self.kind == "sequence":
            return True
        vals = [v for v in self.values if v is not None]
        return self.kind == "param" and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for v in vals)

    def public(self) -> Variable:
        levels = sorted({_typed(v): v for v in self.values}.values(), key=self.sort_key)
        return Variable(self.name, self.kind, self.cost, tuple(levels),
                        tuple(self.label(v) for v in levels))


def _replay(tree: _CutTree, moves: list[Move], constants: dict[str, Any]) -> list[_Var]:
    """Apply the walk to every selected model and read off one column of variables per move.

    Parameters every selected model shares are put in ``constants``.
    """
    paths = [tree.path(r) for r in tree.rows]
    pos = [0] * len(paths)
    counts: dict[str, int] = {}
    out: list[_Var] = []
    last_name = ""

    def numbered(op: str) -> str:
        counts[op] = counts.get(op, 0) + 1
        return op if counts[op] == 1 else f"{op} {counts[op]}"

    for col, (kind, op) in enumerate(moves):
        nxt = [p[i] if i < len(p) else None for p, i in zip(paths, pos)]
        if kind == "sequence":
            vals = [" → ".join(tree.op[n] for n in p[i:]) or _NONE_LABEL for p, i in zip(paths, pos)]
            out.append(_Var("recipe", "sequence", COST_SEQUENCE, col, vals))
            break
        if kind == "type":
            ops = sorted({tree.op[n] for n in nxt if n is not None})
            name = f"operation after {last_name}" if last_name else "first operation"
            out.append(_Var(name, "op_type", COST_OP_TYPE, col,
                            [tree.op[n] if n is not None else None for n in nxt]))
            for o in ops:
                out.extend(_param_vars(tree, numbered(o), col, [n if n is not None and tree.op[n] == o
                                                                else None for n in nxt], constants))
            moving = [n is not None for n in nxt]
        else:
            moving = [n is not None and tree.op[n] == op for n in nxt]
            if op == _BASE_OP:
                out.extend(_param_vars(tree, "", col, nxt, constants))
            else:
                name = last_name = numbered(op)
                out.append(_Var(name, "presence", COST_PRESENCE, col, moving, op=name))
                out.extend(_param_vars(tree, name, col, [n if m else None for n, m in zip(nxt, moving)],
                                       constants))
        pos = [i + 1 if m else i for i, m in zip(pos, moving)]
    return out


def _unique_names(vs: list[_Var]) -> None:
    """Variable names are keys of the values table: number repeats ("recipe (2)")."""
    seen: set[str] = set()
    for v in vs:
        name, k = v.name, 1
        while name in seen:
            k += 1
            name = f"{v.name} ({k})"
        v.name = name
        seen.add(name)


def _param_vars(tree: _CutTree, column: str, col: int, nodes: list[int | None],
                constants: dict[str, Any]) -> list[_Var]:
    """A variable per parameter with more than one value where the operation is applied.

    Elsewhere the value is None; a parameter that only tells "applied or not" adds nothing
    to the presence variable of its column, as in the search's costs.
    """
    applied = [n for n in nodes if n is not None]
    out = []
    for k in sorted({k for n in applied for k in tree.params[n]}):
        seen = {_typed(tree.params[n].get(k, _MISSING)) for n in applied}
        vals = [None if n is None else tree.params[n].get(k, None) for n in nodes]
        name = _BASE_NAME if k == _BASE_NAME else f"{column}.{k}"
        if len(seen) == 1:
            if len(applied) == len(nodes) and vals[0] is not None:
                constants[name] = vals[0]
        elif k == _BASE_NAME:
            out.append(_Var(name, "base", COST_BASE, col, vals))
        else:
            absent = f"no {column}" if all(k in tree.params[n] for n in applied) else _NONE_LABEL
            out.append(_Var(name, "param", COST_PARAM, col, vals, op=column, key=k, none_label=absent))
    return out


# --- simplification -----------------------------------------------------------------------------

class _Counts:
    """Distinct values of a variable and of a pair of variables, cached.

    A variable's values become integer codes once; a pair's count is then one ``np.unique``
    over m combined codes, and each pair is counted once however many merge passes run.
    """

    def __init__(self) -> None:
        self._codes: dict[_Var, tuple[np.ndarray, int]] = {}
        self._pairs: dict[tuple[_Var, _Var], int] = {}

    def _code(self, v: _Var) -> tuple[np.ndarray, int]:
        if v not in self._codes:
            index: dict[tuple[str, Any], int] = {}
            codes = np.fromiter((index.setdefault(_typed(x), len(index)) for x in v.values),
                                dtype=np.int64, count=len(v.values))
            self._codes[v] = (codes, len(index))
        return self._codes[v]

    def codes(self, v: _Var) -> np.ndarray:
        return self._code(v)[0]

    def n(self, v: _Var) -> int:
        return self._code(v)[1]

    def pair(self, a: _Var, b: _Var) -> int:
        if (a, b) not in self._pairs:
            (ca, _), (cb, nb) = self._code(a), self._code(b)
            self._pairs[(a, b)] = self._pairs[(b, a)] = len(np.unique(ca * nb + cb))
        return self._pairs[(a, b)]

    def determines(self, a: _Var, b: _Var) -> bool:
        """Each value of ``a`` goes with one value of ``b`` (b is constant once a is fixed)."""
        return self.pair(a, b) == self.n(a)


def _simplify(vs: list[_Var]) -> list[_Var]:
    """Fewer, plainer variables: always the lossless merges, the others only past two.

    When even merging leaves more than two, the plain variables are returned: the Refine
    panel reads better with "prune.sparsity" than with "prune.sparsity + finetune + ...".
    """
    counts = _Counts()
    plain = _fold_presence_into_params(_merge_cumulative(vs), counts)
    if len(plain) > 2 and not _two_may_do(plain, counts):
        return plain
    vs = list(plain)
    while len(vs) > 2 and _merge_dependent(vs, counts):
        pass
    while len(vs) > 2 and _merge_small(vs, counts):
        pass
    return vs if len(vs) <= 2 else plain


def _two_may_do(vs: list[_Var], counts: _Counts) -> bool:
    """Whether merging could end at two variables: merges keep every distinction, and a
    variable they leave has at most max(MAX_MERGED_LEVELS, largest domain) values, so the
    distinct rows must fit in that squared. Saves the merge passes on hopeless selections."""
    widest = max([MAX_MERGED_LEVELS, *(counts.n(v) for v in vs)])
    rows = len(set(zip(*(counts.codes(v).tolist() for v in vs))))
    return rows <= widest * widest


def _merge_cumulative(vs: list[_Var]) -> list[_Var]:
    """Presence flags where each implies the one before (A, A→B, A→B→C) -> one sequence.

    A sequence the search chose joins a run too, when its rows all have the run's flags.
    """
    steps = [v for v in vs if v.kind in ("presence", "sequence")]
    runs: list[list[_Var]] = []
    for f in steps:
        if runs and all(full or not _present(f, i) for i, full in enumerate(_full(runs[-1][-1]))):
            runs[-1].append(f)
        else:
            runs.append([f])
    out = [v for v in vs if v.kind not in ("presence", "sequence")]
    for run in runs:
        if len(run) == 1:
            out.append(run[0])
            continue
        vals = [" → ".join(_step_label(f, i) for f in run if _present(f, i)) or _NONE_LABEL
                for i in range(len(run[0].values))]
        out.append(_Var("recipe", "sequence", COST_SEQUENCE, run[0].col, vals))
    return sorted(out, key=lambda v: v.col)


def _present(v: _Var, i: int) -> bool:
    return bool(v.values[i]) if v.kind == "presence" else v.values[i] != _NONE_LABEL


def _full(v: _Var) -> list[bool]:
    """Per row: it went all the way through ``v`` (the flag is set; the longest sequence)."""
    if v.kind == "presence":
        return [bool(x) for x in v.values]
    longest = max(v.sort_key(x) for x in v.values)
    return [v.sort_key(x) == longest for x in v.values]


def _step_label(v: _Var, i: int) -> str:
    return v.name if v.kind == "presence" else str(v.values[i])


def _fold_presence_into_params(vs: list[_Var], counts: _Counts) -> list[_Var]:
    """Drop "calibrate yes/no" when "calibrate.batches" already says it (None = no calibrate)."""
    out = list(vs)
    for p in [v for v in vs if v.kind == "presence"]:
        for q in vs:
            if q.kind == "param" and q.op == p.op and counts.determines(q, p):
                q.none_label = f"no {p.name}"
                out.remove(p)
                break
    return out


def _merge_dependent(vs: list[_Var], counts: _Counts) -> bool:
    """Fold a variable that is constant once another is fixed into that other; True if done.

    The kept variable keeps its typed values and order; its labels gain the folded one's.
    """
    for keep in sorted(vs, key=lambda v: (not v.ordinal(), v.cost, v.col)):
        for drop in vs:
            if drop is not keep and counts.determines(keep, drop):
                first = keep.short if keep.kind == "presence" else keep.label
                texts = {_typed(x): _join(first(x), drop.short(y)) for x, y in zip(keep.values, drop.values)}
                keys = {_typed(x): keep.sort_key(x) for x in keep.values}
                merged = _Var(f"{keep.name} + {drop.name}", "merged", keep.cost + drop.cost,
                              min(keep.col, drop.col), list(keep.values), texts=texts, keys=keys,
                              is_ordinal=keep.ordinal())
                _replace(vs, [keep, drop], merged)
                return True
    return False


def _merge_small(vs: list[_Var], counts: _Counts) -> bool:
    """Merge the two variables whose realised combinations are fewest (<= MAX_MERGED_LEVELS).

    Conditional dependencies (B constant for some values of A) show up here as few combinations.
    """
    best: tuple[int, int, int] | None = None
    for i, a in enumerate(vs):
        for j in range(i + 1, len(vs)):
            n = counts.pair(a, vs[j])
            if n <= MAX_MERGED_LEVELS and (best is None or n < best[0]):
                best = (n, i, j)
    if best is None:
        return False
    a, b = vs[best[1]], vs[best[2]]
    values = [_join(a.short(x), b.short(y)) for x, y in zip(a.values, b.values)]
    if len(set(values)) < best[0]:  # short parts collided ("calibrate" the flag and the type)
        values = [f"{a.name}={a.label(x)}, {b.name}={b.label(y)}" for x, y in zip(a.values, b.values)]
    keys = {_typed(v): (a.sort_key(x), b.sort_key(y)) for v, x, y in zip(values, a.values, b.values)}
    _replace(vs, [a, b], _Var(f"{a.name} + {b.name}", "merged", a.cost + b.cost, a.col, values,
                              keys=keys, is_ordinal=False))
    return True


def _replace(vs: list[_Var], old: list[_Var], new: _Var) -> None:
    at = min(vs.index(o) for o in old)
    for o in old:
        vs.remove(o)
    vs.insert(at, new)


def _axes(vs: list[_Var], final: list[Variable]) -> tuple[Variable | None, Variable | None]:
    """x: the ordered variable with more levels (numbers and sequences read best on an axis)."""
    if not vs:
        return None, None
    order = sorted(range(len(vs)), key=lambda i: (not vs[i].ordinal(), -len(final[i].levels), vs[i].col))
    return final[order[0]], (final[order[1]] if len(order) > 1 else None)


# --- values -------------------------------------------------------------------------------------

def _typed(v: Any) -> tuple[str, Any]:
    """Tell True from 1 and False from 0 (Python sets and dicts mix them up)."""
    return (type(v).__name__ if isinstance(v, bool) else "", v)


def _distinct(values: list[Any]) -> set[Any]:
    return {_typed(v) for v in values}


def _member(value: Any, options: Iterable[Any]) -> bool:
    return any(_typed(value) == _typed(o) for o in options)


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, v)
    if isinstance(v, (int, float)):
        return (2, v)
    if isinstance(v, str):
        return (3, v)
    return (4, repr(v))


def _plain_label(v: Any) -> str:
    if v is None:
        return _NONE_LABEL
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p) or _NONE_LABEL


def _hashable(v: Any) -> Any:
    """Parameter values as comparable scalars; lists and dicts become their JSON text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True, default=str)
