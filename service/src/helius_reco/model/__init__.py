"""The recommender: synthetic data, training, the plain-data artifact format, scoring."""
