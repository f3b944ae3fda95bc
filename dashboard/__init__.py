"""The streamq web dashboard: ``python -m streamq.dashboard``."""
