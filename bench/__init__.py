"""The data-plane benchmark: meshkit-proxy against haproxy and stunnel on loopback."""
