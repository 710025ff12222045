"""One small protocol over every broker, one implementation per broker, found by entry points."""
