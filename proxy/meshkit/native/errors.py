# SPDX-License-Identifier: MPL-2.0
"""The errors `meshkit.native` raises: each says what failed and what to do about it."""

from __future__ import annotations


class MeshError(Exception):
    """Any failure of the native mesh library."""


class NotReady(MeshError):
    """The service has no usable leaf certificate, CA roots or authorization state yet."""


class NoHealthyInstance(MeshError):
    """Discovery found no passing, Connect-capable instance of the destination."""


class IdentityMismatch(MeshError):
    """The server's certificate names another service (or trust domain) than expected."""


class Denied(MeshError):
    """The destination refused us: an intention (or the default policy) denies the source."""


class DialFailed(MeshError):
    """Every instance failed (refused, timed out, bad handshake) within the deadline."""
