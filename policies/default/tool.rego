# MCP tools, as cordon's gateway (`cordon mcp`) sees each call a client makes to a server.
#
# input.action: "call" (tools/call) or "list" (whether tools/list shows the tool);
# input.resource: {"server": {"name", "command"}, "tool", "arguments", "annotations"}.
# A tool named by `settings.deny` ("SERVER/TOOL" glob patterns, `*` within a name) is
# refused and hidden; any other is allowed.
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
}

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
