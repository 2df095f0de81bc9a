"""Users, password hashing, sessions, the current-user dependencies and the sign-in pages."""
