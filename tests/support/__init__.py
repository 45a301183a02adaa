"""What the tests share: waiting, free ports, small HTTP servers, and the fakes of what cannot
run here (the Kubernetes API server, the stack's control API, an MLflow registry)."""
