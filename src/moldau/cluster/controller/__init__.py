"""The controller: pure state tables and election rules, driven by events."""
