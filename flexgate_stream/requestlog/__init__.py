"""The request log in PostgreSQL: connections and schema migrations (worker, CLI and launcher; never the web tier)."""
