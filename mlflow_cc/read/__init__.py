"""Read side: rebuild the provenance forest from any MLflow store.

`lineage` (the Forest data model), `reader` (paging + incremental refresh), `snapshot`
(on-disk forest cache), `store_health`, `user_client` (per-user credentials), `tree_text`.
May import: `mlflow_cc.contract`, `mlflow_cc.errors`, `mlflow_cc.metric_info`, `mlflow_cc.artifacts`.
"""
