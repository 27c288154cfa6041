# SPDX-License-Identifier: MPL-2.0
"""The development control plane: a Consul-API-compatible server with a real CA.

`meshkit dev-agent` plays `consul agent -dev` for one machine and for the tests: the same
paths, key spelling, status codes and headers as Consul, so client code written against it
works unchanged against a real cluster.
"""
