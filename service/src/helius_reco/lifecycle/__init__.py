"""Model lifecycle: where the served model comes from and how it is kept current."""
