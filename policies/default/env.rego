# Environment variables an agent inherits: everything but what looks like a credential.
#
# `cordon exec` asks data.cordon.sandbox, which keeps the variables for which `secret` is not
# true (and those the person named with --keep-env); `cordon eval` can ask about one variable.
package cordon.env

import rego.v1

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
	"allow": true,
	"reasons": [sprintf("`%s` is not a credential", [input.resource.name])],
	"obligations": [],
} if {
	is_string(input.resource.name)
}

secret(name) if regex.match(data.cordon.settings.env.secret_pattern, name)

secret(name) if data.cordon.settings.env.drop[name]
