"""Pure analysis over the forest and the artifacts: Pareto fronts, map layout, selection
variables, behaviours, layer comparison.

May import: `mlflow_cc.contract`, `mlflow_cc.errors`, `mlflow_cc.metric_info`, `mlflow_cc.artifacts`,
`mlflow_cc.read`. Never the write side (`mlflow_cc.track`), the torch helpers or `dash_app`.
"""
