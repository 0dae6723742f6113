"""Database bootstrap: the embedded PostgreSQL server, connections and schema migrations."""
