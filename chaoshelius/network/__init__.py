"""Network fault domain: cut or slow a dependency edge (MLflow -> RDS, recommender -> MLflow)."""
