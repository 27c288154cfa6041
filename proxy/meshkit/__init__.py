# SPDX-License-Identifier: MPL-2.0
"""meshkit: Consul Connect for plain hosts and Nomad."""

__version__ = "0.1.0"
