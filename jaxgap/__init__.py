"""jaxgap."""
