# Network egress: only to the allowlist in data, never to cloud metadata, never restricted data.
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
	"obligations": [{"type": "limit", "bytes": data.cordon.settings.net.upload_budget_bytes}],
} if {
	allow_entry
} else := {
	"allow": false,
	"reasons": [sprintf("`%v:%v` is not on the egress allowlist", [input.resource.host, input.resource.port])],
	"obligations": [],
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
