"""Code shared by every streamq service: settings, models, key schema, Lua scripts, streams."""
