# SPDX-License-Identifier: MPL-2.0
"""Local lab machines: debootstrapped Debian booted by systemd-nspawn, one network namespace each.

They stand in for VMs (no hypervisor, no Docker here) so roles and Molecule scenarios run against
a real systemd, a real sshd and a real nftables per host. See docs/lab.md.
"""
