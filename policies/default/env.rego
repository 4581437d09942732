# Environment variables an agent inherits: an allowlist (settings.env.allow and
# allow_prefixes: the path, the locale, the terminal, tool-chain locations, CA bundles), less
# anything that looks like a credential by name or carries credentials in its value.
#
# `cordon exec` asks data.cordon.sandbox, which keeps the variables `passed` allows (and those
# the person named with --keep-env). It never sends values to the policy: it names the
# variables whose value holds URL credentials (`scheme://user:password@`) in
# `context.env_credentials`. `cordon eval` can ask about one variable.
package cordon.env

import rego.v1

settings := data.cordon.settings.env

default decision := {
	"allow": false,
	"reasons": ["env request has no `resource.name`"],
	"obligations": [],
}

decision := {
	"allow": false,
	"reasons": [sprintf("`%s` looks like a credential and is not passed to agents", [input.resource.name])],
	"obligations": [],
} if {
	secret(input.resource.name)
} else := {
	"allow": false,
	"reasons": [sprintf("`%s` is not in the environment allowlist (data.cordon.settings.env.allow); --keep-env %s passes it", [input.resource.name, input.resource.name])],
	"obligations": [],
} if {
	is_string(input.resource.name)
	not allowed(input.resource.name)
} else := {
	"allow": true,
	"reasons": [sprintf("`%s` is in the environment allowlist", [input.resource.name])],
	"obligations": [],
} if {
	is_string(input.resource.name)
}

passed(name) if {
	allowed(name)
	not secret(name)
}

allowed(name) if name in settings.allow

allowed(name) if strings.any_prefix_match(name, settings.allow_prefixes)

# The default pattern starts with `^.*?`: it matches what it would without, and compiles in
# about half the time (no literal prefilter is built for its case-insensitive alternatives).
secret(name) if regex.match(settings.secret_pattern, name)

secret(name) if settings.drop[name]

secret(name) if name in object.get(input.context, "env_credentials", [])
