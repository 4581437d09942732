# MCP tools, as cordon's gateway (`cordon mcp`) sees each call a client makes to a server.
#
# input.action: "call" (tools/call) or "list" (whether tools/list shows the tool);
# input.resource: {"server": {"name", "command"}, "tool", "arguments", "annotations",
# "definition": {"sha256", "pinned", "changed"}} (the definition as last listed, against the
# digest pinned when it was first seen).
# A tool named by `settings.deny` ("SERVER/TOOL" glob patterns, `*` within a name) is
# refused and hidden; so is one whose definition changed since it was pinned (a "rug pull",
# or a description rewritten to instruct the model) until the person accepts it; any other
# is allowed.
package cordon.tool

import rego.v1

default decision := {
	"allow": false,
	"reasons": ["no rule allows this tool; denying by default"],
	"obligations": [],
}

decision := {
	"allow": true,
	"reasons": [sprintf("tool `%s` of server `%s` is not denied by the settings", [input.resource.tool, input.resource.server.name])],
	"obligations": [],
} if {
	input.action in {"call", "list"}
	is_string(input.resource.tool)
	not denied
	not changed
}

decision := {
	"allow": false,
	"reasons": [sprintf("the definition of tool `%s` of server `%s` changed since it was pinned (%s then, %s now): read it, then accept it with `cordon mcp --accept-changed %s/%s`", [input.resource.tool, input.resource.server.name, input.resource.definition.pinned, input.resource.definition.sha256, input.resource.server.name, input.resource.tool])],
	"obligations": [],
} if {
	not denied
	changed
}

changed if input.resource.definition.changed == true

decision := {
	"allow": false,
	"reasons": [sprintf("tool `%s` of server `%s` is denied by the settings (`%s`)", [input.resource.tool, input.resource.server.name, pattern])],
	"obligations": [],
} if {
	some pattern in denied_by
}

denied if count(denied_by) > 0

denied_by contains pattern if {
	some pattern in object.get(settings, "deny", [])
	glob.match(pattern, ["/"], sprintf("%s/%s", [input.resource.server.name, input.resource.tool]))
}

settings := object.get(data.cordon.settings, "tool", {})
