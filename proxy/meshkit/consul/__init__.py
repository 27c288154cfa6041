# SPDX-License-Identifier: MPL-2.0
"""Consul mode: the proxy takes identity, certificates, upstreams and intentions from Consul."""
