"""Outside services replaced by servers that speak their protocol."""
