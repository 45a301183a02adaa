"""Zones fault domain: drain and uncordon an availability zone."""
