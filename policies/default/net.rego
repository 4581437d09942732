# Network egress: only to the allowlist in data or what the person named with --allow-net,
# never to cloud metadata, never restricted data, never to an internal address that was not
# named explicitly, never through a host name that looks like a data channel.
#
# cordon's proxy fills in `resource.addresses` (what the host resolved to, each with its
# `class`), `resource.host_is_ip`, `resource.exfil` (label length and entropy, distinct
# subdomains of the parent in the last minute) and `context.request.net`.
#
# The rules are written for the bytecode VM: few rules, no helper functions, map lookups
# instead of scans of the allowlist.
package cordon.net

import rego.v1

default decision := {
	"allow": false,
	"reasons": ["no rule allows this connection; denying by default"],
	"obligations": [],
}

decision := {"allow": false, "reasons": [r | some r in deny], "obligations": []} if {
	count(deny) > 0
} else := {
	"allow": true,
	"reasons": [sprintf("`%s` matches allowlist entry `%s`", [input.resource.host, allow_entry])],
	"obligations": [limit],
} if {
	allow_entry
} else := {
	"allow": true,
	"reasons": [sprintf("`%s` was allowed by the person for always (remembered)", [host_port])],
	"obligations": [limit],
} if {
	data.cordon.remembered.net[host_port]
	not internal
} else := {
	"allow": true,
	"reasons": [sprintf("`%s` is not on the egress allowlist; the person is asked", [host_port])],
	"obligations": [
		{
			"type": "consent",
			"message": sprintf("Let the program connect to %s? It is not on the egress allowlist.", [host_port]),
			"timeout_s": data.cordon.settings.net.consent_timeout_s,
		},
		limit,
	],
} if {
	object.get(object.get(input.context, "consent", {}), "interactive", false) == true
	not internal
} else := {
	"allow": false,
	"reasons": [sprintf("`%v:%v` is not on the egress allowlist", [input.resource.host, input.resource.port])],
	"obligations": [],
}

limit := {
	"type": "limit",
	"bytes": data.cordon.settings.net.upload_budget_bytes,
	"per_minute": data.cordon.settings.net.connections_per_minute,
}

deny contains "network request has no `resource.host`" if not input.resource.host

deny contains msg if {
	data.cordon.settings.net.metadata_hosts[input.resource.host]
	msg := sprintf("`%s` is a cloud metadata address and is never reachable", [input.resource.host])
}

deny contains msg if {
	startswith(input.resource.host, "169.254.")
	msg := sprintf("`%s` is link-local (169.254.0.0/16) and is never reachable", [input.resource.host])
}

deny contains "restricted data never leaves the device" if input.resource.sensitivity_level >= 3

# The allowlist entry that admits the connection: the host itself in `allow`, else a parent
# domain in `allow_subdomains` (`githubusercontent.com` there admits `a.githubusercontent.com`
# and `a.b.githubusercontent.com`, not `githubusercontent.com` itself). An entry without
# `ports` admits any port.
allow_entry := input.resource.host if {
	entry := data.cordon.settings.net.allow[input.resource.host]
	input.resource.port in object.get(entry, "ports", [input.resource.port])
} else := sprintf("*.%s", [min(subdomain_matches)]) if {
	count(subdomain_matches) > 0
}

subdomain_matches contains domain if {
	some domain, entry in data.cordon.settings.net.allow_subdomains
	endswith(input.resource.host, concat("", [".", domain]))
	input.resource.port in object.get(entry, "ports", [input.resource.port])
}

# What the person asked for: `host` (any port) or `host:port`. An internal address is only
# reachable when named with its port.
allow_entry := entry if {
	not allow_by_data
	some entry in object.get(object.get(input.context, "request", {}), "net", [])
	entry == host_port
} else := entry if {
	not allow_by_data
	not internal
	some entry in object.get(object.get(input.context, "request", {}), "net", [])
	entry == input.resource.host
}

# `host:port` as --allow-net entries are written: an IPv6 address in brackets, so that
# `::1:8098` (an address) is never `[::1]:8098` (a port of ::1).
host_port := entry_for(input.resource.host, input.resource.port)

entry_for(host, port) := sprintf("[%s]:%d", [host, port]) if {
	contains(host, ":")
} else := sprintf("%s:%d", [host, port])

allow_by_data if data.cordon.settings.net.allow[input.resource.host]

allow_by_data if count(subdomain_matches) > 0

internal if {
	some address in object.get(input.resource, "addresses", [])
	address.class != "public"
}

named_explicitly if {
	input.resource.host_is_ip
	host_port in object.get(object.get(input.context, "request", {}), "net", [])
}

deny contains msg if {
	some address in object.get(input.resource, "addresses", [])
	address.class in {"metadata", "link_local", "reserved"}
	msg := sprintf("`%s` resolves to %s, a %s address, which is never reachable", [input.resource.host, address.ip, address.class])
}

deny contains msg if {
	some address in object.get(input.resource, "addresses", [])
	address.class in {"loopback", "private"}
	not named_explicitly
	msg := sprintf(
		"`%s` resolves to %s, a %s address: an internal address is reachable only when named explicitly with its port (--allow-net %s)",
		[input.resource.host, address.ip, address.class, entry_for(address.ip, input.resource.port)],
	)
}

deny contains msg if {
	input.resource.exfil.longest_label > data.cordon.settings.net.exfil.max_label
	msg := sprintf("`%s` has a %d-character label, which looks like data encoded in a host name", [input.resource.host, input.resource.exfil.longest_label])
}

deny contains msg if {
	input.resource.exfil.longest_label >= data.cordon.settings.net.exfil.entropy_min_label
	input.resource.exfil.entropy > data.cordon.settings.net.exfil.max_entropy
	msg := sprintf("`%s` has a random-looking label (entropy %v bits per character), which looks like data encoded in a host name", [input.resource.host, input.resource.exfil.entropy])
}

deny contains msg if {
	input.resource.exfil.unique_subdomains > data.cordon.settings.net.exfil.max_unique_subdomains
	msg := sprintf("`%s` is one of %d distinct subdomains asked for in a minute, which looks like data sent through names", [input.resource.host, input.resource.exfil.unique_subdomains])
}
