"""Generated gRPC stubs of topdeck.resilience.v1 (clients/python/gen.sh; never edit by hand)."""
