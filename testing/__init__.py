"""Test and benchmark support, not shipped: local `mlflow server` and basic-auth servers, the
fault proxy, the concurrent-writer driver, synthetic forests."""
