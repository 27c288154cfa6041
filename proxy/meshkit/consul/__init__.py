"""Consul mode: the proxy takes identity, certificates, upstreams and intentions from Consul."""
