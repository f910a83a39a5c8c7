"""History: interval snapshots, rule states, decisions and notifications, in SQLite or
PostgreSQL."""
