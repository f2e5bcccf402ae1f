"""Chat rooms and messages (the chat issue fills this in)."""
