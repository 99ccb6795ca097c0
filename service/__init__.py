"""The gRPC service: a thin adapter over the rules engine in `rules`."""
