"""pytest plugin: a real moldau broker for your tests (filled in with the broker)."""
