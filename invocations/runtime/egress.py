"""The egress filter for functions with outbound network on: the internet, never the host or a private network.

Such a function shares the host's network namespace. Unfiltered, it could reach whatever the host can:
the console, PostgreSQL and Redis on 127.0.0.1 (RQ's jobs are pickles: whoever writes to Redis runs code
in the workers), a cloud metadata service at 169.254.169.254, and the private network. A Lambda function
outside a VPC has only the internet, so an nftables table drops, for packets sent by sandbox uids,
everything addressed to the host itself, to loopback, link-local, private (RFC 1918, RFC 6598, ULA),
reserved and multicast ranges, except DNS to the resolvers in /etc/resolv.conf. Refused packets are
dropped, so a connection attempt times out, as it does from a Lambda function outside a VPC.

The table is the host's, named after the uid range, and replaced as a whole (one nft transaction)
each time a worker starts; it only ever matches sandbox uids, so it is left in place when workers stop.
"""

import functools
import ipaddress
import os
import shutil
import subprocess

from django.conf import settings

BLOCKED_V4 = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
              "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3")
# 6to4 and NAT64 prefixes can carry a private IPv4 address inside an IPv6 one.
BLOCKED_V6 = ("::/127", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "fc00::/7", "fe80::/10",
              "ff00::/8")


def table_name():
    return f"lambda_egress_{settings.SANDBOX_UID_MIN}_{settings.SANDBOX_UID_MAX}"


def resolvers(path="/etc/resolv.conf"):
    """Return the name servers a function's DNS lookups go to (they may be on a private network)."""
    found = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        found.append(ipaddress.ip_address(parts[1].split("%")[0]))
                    except ValueError:
                        pass
    except OSError:
        pass
    return found


def ruleset():
    name = table_name()
    uids = f"{settings.SANDBOX_UID_MIN}-{settings.SANDBOX_UID_MAX}"
    dns = [
        f"    {'ip' if a.version == 4 else 'ip6'} daddr {a} meta l4proto {{ tcp, udp }} th dport 53 accept"
        for a in resolvers()
    ]
    lines = [
        # Creating, then deleting, makes the load work whether or not the table exists already.
        f"table inet {name}",
        f"delete table inet {name}",
        f"table inet {name} {{",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        # Only packets a sandbox uid's socket sends. Not "skuid != … accept": packets the kernel sends
        # without a socket owner (a listening socket's SYN-ACK) would fall through to the drops.
        f"    meta skuid {uids} jump sandbox",
        "  }",
        "  chain sandbox {",
        *dns,
        "    fib daddr type { local, broadcast, multicast, anycast } drop",
        f"    ip daddr {{ {', '.join(BLOCKED_V4)} }} drop",
        f"    ip6 daddr {{ {', '.join(BLOCKED_V6)} }} drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def install():
    """Load the filter if this host can (root and nft); return (active, explanation) for /status/."""
    nft = shutil.which("nft")
    if nft is None:
        return False, "nft not installed (apt-get install nftables): a function with outbound network on can reach the host and private networks"
    try:
        subprocess.run([nft, "-f", "-"], input=ruleset(), text=True, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return False, f"nft could not load the filter ({detail.strip()}): a function with outbound network on can reach the host and private networks"
    return True, "functions with outbound network on reach the internet only: not the host, nor private or link-local addresses"


@functools.cache
def status():
    """Return (active, explanation), installing the filter once per process."""
    if os.geteuid() != 0:
        return False, "needs a worker running as root (uid per environment): a function with outbound network on can reach the host and private networks"
    return install()
