"""The streamq web dashboard: ``python -m dashboard``."""
