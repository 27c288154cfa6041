"""meshkit: Consul Connect for plain hosts and Nomad."""

__version__ = "0.1.0"
