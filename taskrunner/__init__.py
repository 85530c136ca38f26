"""taskrunner."""
