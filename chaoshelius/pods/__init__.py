"""Pods fault domain: kill replicas, scale an app down (full outage), check replacement."""
