"""The cheapest walk of pointers down the cut tree: a memoised shortest path over pointer states under a work budget, finished greedily past it.
"""

from __future__ import annotations

from collections.abc import Hashable

from mlflow_cc.analysis.selection.cut_tree import Move, State, Token, _CutTree
from mlflow_cc.analysis.selection.model import (
    _BASE_NAME,
    COST_BASE,
    COST_OP_TYPE,
    COST_PARAM,
    COST_PRESENCE,
    COST_SEQUENCE,
    MAX_PRESENCE_NAMES,
)

#: Token visits spent on the exact search before the rest is finished greedily.
SEARCH_BUDGET = 20_000


#: Deepest recursion of the exact search; deeper walks are finished greedily.
MAX_SEARCH_DEPTH = 150


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
