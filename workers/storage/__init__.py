"""Adapters of the MediaStorage port."""
