"""The dashboard's routes, one router per resource (included by ``streamq.dashboard.app.create_app``)."""
