"""Write side: model runs with their lineage (`tracking`), metric metadata tags, flags.

May import: `mlflow_cc.contract`, `mlflow_cc.errors`, `mlflow_cc.metric_info`, `mlflow_cc.artifacts`,
`mlflow_cc.read` (the lineage model). Never `mlflow_cc.analysis` or `dash_app`.
"""
