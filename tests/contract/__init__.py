"""Contract tests: Gantry's fakes against the real services' published artifacts."""
