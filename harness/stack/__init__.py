"""The local broker stack: services started as processes on 127.0.0.1, with toxiproxy in front."""
