"""Adapters that run the field's curvature libraries as engines of the contract."""
