"""Guard state backends: process memory and Redis."""
