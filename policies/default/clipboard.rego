# The desktop's clipboard, as a WebAssembly skill reaches it (`cordon:agent/clipboard`).
#
# Writing replaces what the person copied: allowed, up to a size. Reading can reveal what
# the person copied from anywhere (a password manager, another program): the person is
# asked every time.
package cordon.clipboard

import rego.v1

default decision := {
	"allow": false,
	"reasons": ["no rule allows this use of the clipboard; denying by default"],
	"obligations": [],
}

decision := {
	"allow": true,
	"reasons": [sprintf("a skill may put up to %d bytes on the clipboard", [settings.max_write_bytes])],
	"obligations": [],
} if {
	input.action == "write"
	input.resource.bytes <= settings.max_write_bytes
}

decision := {
	"allow": false,
	"reasons": [sprintf("%d bytes is more than the %d a skill may put on the clipboard", [input.resource.bytes, settings.max_write_bytes])],
	"obligations": [],
} if {
	input.action == "write"
	input.resource.bytes > settings.max_write_bytes
}

decision := {
	"allow": true,
	"reasons": ["the clipboard may hold what the person copied from anywhere: the person is asked"],
	"obligations": [{
		"type": "consent",
		"message": sprintf("Let skill `%s` read your clipboard?", [object.get(object.get(input.subject, "skill", {}), "name", "?")]),
	}],
} if {
	input.action == "read"
}

settings := data.cordon.settings.clipboard
