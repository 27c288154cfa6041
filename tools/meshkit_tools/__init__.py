# SPDX-License-Identifier: MPL-2.0
"""meshkit-tools: the dev agent, the lab, the demo and the controller CLIs.

A sibling of the host package `meshkit`: this package may import from `meshkit` (SPIFFE IDs,
certificate formats, the bounded file reader); `meshkit` never imports from here.
"""
