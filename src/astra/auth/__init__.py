"""Users, password hashing, sessions and the current-user dependencies."""
