"""The sandbox's egress rules: every outbound TCP connection of the agent goes to the vault.

Rendered as a shell script for the Pod's egress-init container (root, NET_ADMIN and NET_RAW, exits
before anything else starts). Every user but the vault's is redirected to the vault's transparent
port, so a tool that ignores HTTP_PROXY still cannot get out; anything that is not redirected is
refused, except DNS to the Pod's own resolver; the vault's admin port is out of the agent's reach.
IPv6 leaves only from the vault.
"""

from __future__ import annotations

from paddock import sandbox

CHAIN = "PADDOCK_OUTPUT"


def iptables_rules() -> list[str]:
    """The iptables commands, in order; "$dns" is the resolver's address."""
    vault = sandbox.VAULT_UID
    nat = f"iptables -w -t nat -A {CHAIN}"
    out = "iptables -w -A OUTPUT"
    out6 = "ip6tables -w -A OUTPUT"
    return [
        f"iptables -w -t nat -N {CHAIN}",
        f"{nat} -m owner --uid-owner {vault} -j RETURN",
        # The Pod's own ports (runner, model server, vault proxy) stay reachable over loopback.
        f"{nat} -o lo -j RETURN",
        f'{nat} -p tcp --dport 53 -d "$dns" -j RETURN',
        f"{nat} -p tcp -j REDIRECT --to-ports {sandbox.VAULT_TRANSPARENT_PORT}",
        f"iptables -w -t nat -A OUTPUT -p tcp -j {CHAIN}",
        f"{out} -m owner --uid-owner {vault} -j ACCEPT",
        f"{out} -o lo -p tcp --dport {sandbox.VAULT_ADMIN_PORT} -j REJECT",
        f"{out} -o lo -j ACCEPT",
        f'{out} -p udp --dport 53 -d "$dns" -j ACCEPT',
        f'{out} -p tcp --dport 53 -d "$dns" -j ACCEPT',
        f"{out} -j REJECT",
        f"{out6} -m owner --uid-owner {vault} -j ACCEPT",
        f"{out6} -o lo -p tcp --dport {sandbox.VAULT_ADMIN_PORT} -j REJECT",
        f"{out6} -o lo -j ACCEPT",
        f"{out6} -j REJECT",
    ]


def iptables_script() -> str:
    """The egress-init container's script (POSIX sh)."""
    lines = [
        "set -eu",
        "dns=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)",
        *iptables_rules(),
    ]
    return "\n".join(lines) + "\n"
