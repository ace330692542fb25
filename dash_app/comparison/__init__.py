"""The Performance Comparison's view-model: behaviours and layers of selected models against a base.

The read-side glue between the store and the app's comparison tables (no Dash here):

* :func:`choose_base` picks the base model of a selection and says why (the selection's
  closest common ancestor with outputs, selected or not);
* :func:`load_behaviour_set` reads every model's outputs, notes which models have none
  (and why), and computes :func:`~mlflow_cc.analysis.behaviours.compare_behaviours` against the
  base; :class:`BehaviourSet` then answers the table's questions (rows per class,
  subgroup or instance for one metric, absolute or relative; header summaries; the
  most frequent prediction changes) with server-side sort, filter and paging;
* :func:`load_layer_set` streams the layer comparison
  (:func:`~mlflow_cc.analysis.layer_compare.compare_layer_runs`) and :class:`LayerSet` turns it
  into the rows of a module tree (expanded modules, a name pattern, sorting by change);
* :class:`Comparisons` caches both, keyed by the run ids, the base and the kind, so the
  app computes a comparison once however often its tables are paged.

Modules: `base_choice`, `behaviour_set`, `layer_set`, `cache`.
"""

from dash_app.comparison.base_choice import (
    LAYER_KINDS,
    ROW_MODES,
    BaseChoice,
    choose_base,
    default_base,
    ordered_models,
)
from dash_app.comparison.behaviour_set import BehaviourSet, Drill, load_behaviour_set
from dash_app.comparison.cache import Comparisons
from dash_app.comparison.layer_set import LayerSet, load_layer_set
from mlflow_cc.analysis.layer_compare import CHANGE_BUCKETS

__all__ = [
    "CHANGE_BUCKETS",
    "LAYER_KINDS",
    "ROW_MODES",
    "BaseChoice",
    "BehaviourSet",
    "Comparisons",
    "Drill",
    "LayerSet",
    "choose_base",
    "default_base",
    "load_behaviour_set",
    "load_layer_set",
    "ordered_models",
]
