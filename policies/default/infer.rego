# Model calls: restricted data goes only to models that run on this device.
package cordon.infer

import rego.v1

default decision := {
	"allow": false,
	"reasons": ["no rule allows this model call; denying by default"],
	"obligations": [],
}

local_model if input.resource.host in {"localhost", "127.0.0.1", "::1"}

decision := {
	"allow": false,
	"reasons": [sprintf("restricted data never leaves the device: model `%v` is remote", [input.resource.host])],
	"obligations": [],
} if {
	input.resource.sensitivity_level >= 3
	not local_model
} else := {"allow": true, "reasons": ["model runs on this device"], "obligations": []} if {
	local_model
} else := {
	"allow": true,
	"reasons": [sprintf("%s data may be sent to a remote model with consent", [input.resource.sensitivity])],
	"obligations": [{"type": "consent", "message": sprintf("Send %s data to model `%v`?", [input.resource.sensitivity, input.resource.host])}],
} if {
	input.resource.sensitivity_level == 2
} else := {"allow": true, "reasons": [sprintf("%s data may be sent to a remote model", [input.resource.sensitivity])], "obligations": []} if {
	input.resource.sensitivity_level <= 1
}
