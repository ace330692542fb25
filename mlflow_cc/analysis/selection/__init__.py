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

Modules: `model` (public types, costs), `cut_tree`, `search`, `variables` (replay), `simplify`, `explain`.
"""

from mlflow_cc.analysis.selection.explain import explain_selection, refine
from mlflow_cc.analysis.selection.model import Explanation, Variable

__all__ = ["Explanation", "Variable", "explain_selection", "refine"]
