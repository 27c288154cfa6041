# SPDX-License-Identifier: MPL-2.0
"""The data-plane benchmark: meshkit-proxy against haproxy and stunnel on loopback."""
