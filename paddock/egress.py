"""The egress-init container's firewall: every outbound TCP connection goes through the vault.

`iptables_script()` is the whole contract: the operator puts its output in the init container
(`sh -c`, NET_ADMIN) or, in CNI mode, `paddock cni-install` puts it in the node's paddock-egress
plugin (cni/), which runs it in each sandbox Pod's network namespace; the vault's transparent-mode
test runs the same text inside a network namespace. For IPv4 and IPv6 alike, connections from
every user but the vault's are redirected to VAULT_TRANSPARENT_PORT; loopback destinations stay
local except the vault's admin port; DNS may reach only the Pod's nameservers (/etc/resolv.conf,
or PADDOCK_NAMESERVERS from the CNI plugin); everything else new is rejected. Where IPv6 exists
but cannot be redirected, its egress is rejected instead; where it cannot be filtered at all the
script fails, so the Pod never starts open.
"""

from __future__ import annotations

from typing import Final

from paddock.sandbox import VAULT_ADMIN_PORT, VAULT_TRANSPARENT_PORT, VAULT_UID

REDIRECT_CHAIN: Final = "PADDOCK_REDIRECT"
FILTER_CHAIN: Final = "PADDOCK_EGRESS"


def _nat_rules(vault_uid: int, redirect_port: int) -> list[str]:
    chain = REDIRECT_CHAIN
    return [
        f"-t nat -A {chain} -m owner --uid-owner {vault_uid} -j RETURN",
        # Loopback and the Pod's own addresses: the model server, the runner, the explicit proxy.
        f"-t nat -A {chain} -o lo -j RETURN",
        f'for ns in $nameservers; do $ipt -t nat -A {chain} -d "$ns" -p tcp --dport 53 -j RETURN; '
        "done",
        f"-t nat -A {chain} -p tcp -j REDIRECT --to-ports {redirect_port}",
    ]


def _filter_rules(
    vault_uid: int, admin_port: int, redirect_port: int, *, lo_only: bool = False
) -> list[str]:
    chain = FILTER_CHAIN
    rules = [
        # Replies of connections made into the Pod (probes, the gateway) leave freely.
        f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
        # The admin port is for the kubelet and Prometheus, which come from outside the Pod.
        f"-A {chain} -p tcp --dport {admin_port} -m owner ! --uid-owner {vault_uid} "
        "-j REJECT --reject-with tcp-reset",
        f"-A {chain} -m owner --uid-owner {vault_uid} -j RETURN",
        f"-A {chain} -o lo -j RETURN",
        # Connections the nat chain redirected to the vault (the hook still names the original
        # interface, so `-o lo` does not see them).
        f"-A {chain} -p tcp --dport {redirect_port} -m conntrack --ctstate DNAT -j RETURN",
    ]
    if not lo_only:
        rules.append(
            "for ns in $nameservers; do for p in udp tcp; do "
            f'$ipt -A {chain} -d "$ns" -p "$p" --dport 53 -j RETURN; done; done'
        )
    rules.append(f"-A {chain} -j REJECT")
    return rules


def _lines(rules: list[str]) -> list[str]:
    return [rule if rule.startswith("for ") else f"$ipt {rule}" for rule in rules]


_SCRIPT = """#!/bin/sh
# Rendered by paddock.egress.iptables_script: the Pod's egress redirect to the vault sidecar.
set -eu
IPTABLES="${{IPTABLES:-iptables}}"
IP6TABLES="${{IP6TABLES:-ip6tables}}"
# The CNI plugin runs this from the node, whose /etc/resolv.conf is not the Pod's: it passes the
# Pod's nameservers (the runtime's dns capability) in PADDOCK_NAMESERVERS.
if [ -n "${{PADDOCK_NAMESERVERS+set}}" ]; then
  all_ns="$PADDOCK_NAMESERVERS"
else
  all_ns=$(awk '$1 == "nameserver" {{print $2}}' /etc/resolv.conf 2>/dev/null || true)
fi
ns4=""; ns6=""
for ns in $all_ns; do
  case "$ns" in *:*) ns6="$ns6 ${{ns%%%*}}" ;; *) ns4="$ns4 $ns" ;; esac
done

chain() {{  # create or empty a chain, and hook it into OUTPUT once
  $ipt $1 -N "$2" 2>/dev/null || $ipt $1 -F "$2"
  $ipt $1 -C OUTPUT $3 -j "$2" 2>/dev/null || $ipt $1 -A OUTPUT $3 -j "$2"
}}

redirect() {{  # ipt nameservers
  ipt="$1 -w"; nameservers="$2"
  chain "-t nat" {redirect_chain} "-p tcp"
{nat}
  chain "-t filter" {filter_chain} ""
{full}
}}

reject_all() {{  # ipt: no NAT for this family, so nothing but loopback leaves
  ipt="$1 -w"; nameservers=""
  chain "-t filter" {filter_chain} ""
{lo_only}
}}

redirect "$IPTABLES" "$ns4"
if [ -e /proc/net/if_inet6 ]; then
  if $IP6TABLES -w -t nat -S >/dev/null 2>&1; then
    redirect "$IP6TABLES" "$ns6"
  elif $IP6TABLES -w -S >/dev/null 2>&1; then
    reject_all "$IP6TABLES"
  else
    echo "paddock egress: IPv6 is enabled but $IP6TABLES cannot filter it" >&2
    exit 1
  fi
fi
echo "paddock egress: outbound TCP redirected to port {redirect_port} (vault uid {vault_uid})"
"""


def iptables_script(
    *,
    vault_uid: int = VAULT_UID,
    redirect_port: int = VAULT_TRANSPARENT_PORT,
    admin_port: int = VAULT_ADMIN_PORT,
) -> str:
    """The POSIX shell script that sets up the Pod's egress redirect (idempotent, fails closed)."""

    def block(rules: list[str]) -> str:
        return "\n".join(f"  {line}" for line in _lines(rules))

    return _SCRIPT.format(
        nat=block(_nat_rules(vault_uid, redirect_port)),
        full=block(_filter_rules(vault_uid, admin_port, redirect_port)),
        lo_only=block(_filter_rules(vault_uid, admin_port, redirect_port, lo_only=True)),
        redirect_chain=REDIRECT_CHAIN,
        filter_chain=FILTER_CHAIN,
        redirect_port=redirect_port,
        vault_uid=vault_uid,
    )
