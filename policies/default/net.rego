# Network egress: only to the allowlist in data, never to cloud metadata, never restricted data.
package cordon.net

import rego.v1

settings := data.cordon.settings.net

default decision := {
	"allow": false,
	"reasons": ["no rule allows this connection; denying by default"],
	"obligations": [],
}

decision := {"allow": false, "reasons": sort([r | some r in deny]), "obligations": []} if {
	count(deny) > 0
} else := {
	"allow": true,
	"reasons": [sprintf("`%s` matches allowlist entry `%s`", [input.resource.host, allow_entry.host])],
	"obligations": [{"type": "limit", "bytes": settings.upload_budget_bytes}],
} if {
	allow_entry
} else := {
	"allow": false,
	"reasons": [sprintf("`%v:%v` is not on the egress allowlist", [input.resource.host, input.resource.port])],
	"obligations": [],
}

deny contains "network request has no `resource.host`" if not input.resource.host

deny contains msg if {
	input.resource.host in settings.metadata_hosts
	msg := sprintf("`%s` is a cloud metadata address and is never reachable", [input.resource.host])
}

deny contains msg if {
	is_link_local(input.resource.host)
	msg := sprintf("`%s` is link-local (169.254.0.0/16) and is never reachable", [input.resource.host])
}

deny contains "restricted data never leaves the device" if input.resource.sensitivity_level >= 3

is_link_local(host) if {
	regex.match(`^[0-9.]+$`, host)
	startswith(host, "169.254.")
}

host_matches(host, pattern) if host == pattern

host_matches(host, pattern) if {
	startswith(pattern, "*.")
	endswith(host, substring(pattern, 1, -1))
}

port_matches(entry) if not entry.ports

port_matches(entry) if input.resource.port in entry.ports

allow_entry := entry if {
	some entry in settings.allow
	host_matches(input.resource.host, entry.host)
	port_matches(entry)
}
