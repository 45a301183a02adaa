"""HTTP layer: routes, request/response schemas, shared dependencies, the metrics middleware."""
