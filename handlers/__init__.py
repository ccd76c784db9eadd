"""Thin triggers, one Blueprint per module (each exposes `bp`); function_app.py registers them by name."""
