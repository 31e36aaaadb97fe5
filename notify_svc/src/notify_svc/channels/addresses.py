"""Which network addresses a webhook may be sent to (server-side request forgery checks), free of I/O.

A user chooses the webhook URL, so without these checks the service could be made
to call its own network: a database on 10.0.0.5, an admin page on 127.0.0.1, or
the cloud metadata service that hands out credentials. By default only global
(public internet) addresses are called. An operator may allow private, loopback
and link-local addresses (a webhook receiver inside the same network, tests);
metadata addresses, the shared address space of carrier-grade NAT, multicast,
unspecified and reserved addresses are never called.

IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, the old
IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96 and 6to4 2002::/16) are judged by
the IPv4 address inside, so ::ffff:127.0.0.1 is loopback like 127.0.0.1.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
    )
)
"""Cloud instance metadata services: they hand out credentials, so they are never called, whatever the policy."""

_SHARED_ADDRESS_SPACE = IPv4Network("100.64.0.0/10")  # carrier-grade NAT: another customer's network
_THIS_NETWORK = IPv4Network("0.0.0.0/8")  # 0.x.y.z: Linux connects 0.0.0.0 to the host itself
_NAT64 = IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = address.packed
    if address in _NAT64:
        return IPv4Address(packed[12:])
    # IPv4-compatible (::a.b.c.d, deprecated): the first 96 bits are zero; :: and ::1 are IPv6's own.
    if packed[:12] == bytes(12) and int(address) > 1:
        return IPv4Address(packed[12:])
    return None


def without_scope(address: IPAddress) -> IPAddress:
    """The address without an IPv6 zone ("fe80::1%eth0" -> "fe80::1"), so it compares equal to the bare form."""
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        return IPv6Address(int(address))
    return address


def unwrapped(address: IPAddress) -> IPAddress:
    """The address to judge: the IPv4 address inside an IPv6 form that carries one, else the address (unscoped)."""
    bare = without_scope(address)
    if isinstance(bare, IPv6Address):
        inner = embedded_ipv4(bare)
        if inner is not None:
            return inner
    return bare


def address_problem(address: IPAddress, *, allow_private_networks: bool) -> str | None:
    """Why a webhook must not be sent to this address (a short noun phrase), or None when it may be.

    Private, loopback and link-local addresses are allowed only with allow_private_networks;
    the rest of the space that is not global never.
    """
    inner = unwrapped(address)
    if without_scope(address) in METADATA_ADDRESSES or inner in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if inner.is_unspecified or (isinstance(inner, IPv4Address) and inner in _THIS_NETWORK):
        return "an unspecified address"
    if inner.is_multicast:
        return "a multicast address"
    if isinstance(inner, IPv4Address) and inner in _SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if inner.is_loopback:
        return None if allow_private_networks else "a loopback address"
    # Before the private check: Python counts 240.0.0.0/4 and 255.255.255.255 as private too.
    if inner.is_reserved:
        return "a reserved address"
    if inner.is_link_local:
        return None if allow_private_networks else "a link-local address"
    if inner.is_global and not (isinstance(inner, IPv6Address) and inner.is_site_local):
        return None
    return None if allow_private_networks else "a private address"


def is_loopback_name(host: str) -> bool:
    """Whether a host name is "localhost" or under it (RFC 6761: these name the host itself)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")
