"""Actor modules. Import order does not matter; the broker is set before this package loads."""
