"""The scheduler service: promotes due scheduled tasks and fires periodic schedules."""
