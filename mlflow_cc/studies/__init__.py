"""Case studies: real models on data that needs no download (the examples and `mlflow-cc demo`)."""
