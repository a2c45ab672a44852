"""Renderers: audit results -> text for people (table) and machines (JSON)."""
