"""Model-registry activities: promote a model version, as a release pipeline would."""
