"""The clickstream tracker flow: click events per user, aggregated idempotently in a database."""
