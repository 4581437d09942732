# MCP servers, as cordon's gateway (`cordon mcp`) sees what a client asks of a server, and
# what a server asks of the client.
#
# input.action:
#   "call"           tools/call; resource: {"server": {"name", "command", "executable"},
#                    "tool", "arguments", "definition": {"listed", "sha256", "pinned", "changed"}}
#   "list"           whether tools/list shows a tool (same resource, with "annotations")
#   "read_resource", "list_resources", "subscribe_resource"
#                    resources/read, what resources/list shows, resources/subscribe: "uri"
#                    (one form of it: `FILE:///a/../b%2Fc` is `file:///b/c`), "uri_as_sent"
#   "get_prompt", "list_prompts"        prompts/get ("prompt", "arguments") and prompts/list
#   "method"         a client method outside the MCP specification: "method", "params"
#   "server_request" a request the server sends the client (sampling, elicitation, roots):
#                    "method", "params"
#   "relay"          once a session: whether the server's messages are relayed at all, and
#                    what every message, either way, is redacted with
#
# Settings (`data.cordon.settings.tool`):
#   deny            "SERVER/TOOL" patterns (`*` matches any part of a server's name, or of a
#                   tool's, `/` included): refused and hidden
#   ask             "SERVER/TOOL" patterns whose calls need the person's answer
#   deny_resources  URI patterns (`*` matches anything) refused and hidden
#   deny_prompts    "SERVER/PROMPT" patterns refused and hidden
#   redact          kinds removed from what is sent to a tool and from what it returns
#   per_minute      calls a minute to one tool, resource, prompt or method
#   methods         client methods outside the specification let through
#   server_requests what a server may ask the client
# A tool whose definition changed since it was pinned (a "rug pull", or a description
# rewritten to instruct the model) is refused and hidden until the person accepts it; a
# tool not listed in this session is refused (its definition was never checked).
package cordon.tool

import rego.v1

default decision := {
	"allow": false,
	"reasons": ["no rule allows this request; denying by default"],
	"obligations": [],
}

settings := object.get(data.cordon.settings, "tool", {})

server := input.resource.server.name

decision := {"allow": false, "reasons": sort([r | some r in refusals]), "obligations": []} if {
	count(refusals) > 0
} else := {
	"allow": false,
	"reasons": [sprintf("calls of `%s/%s` need the person's answer, and no one can be asked here (run with --consent socket and answer with `cordon approve`, or --consent notify on a desktop)", [server, input.resource.tool])],
	"obligations": [],
} if {
	input.action == "call"
	asked
	not interactive
} else := {
	"allow": true,
	"reasons": [allowed],
	"obligations": obligations,
} if {
	allowed
}

interactive if object.get(object.get(input.context, "consent", {}), "interactive", false) == true

tool_name := sprintf("%s/%s", [server, input.resource.tool]) if is_string(input.resource.tool)


# Why a request is refused, whatever else holds.
refusals contains sprintf("tool `%s` of server `%s` is denied by the settings (`%s`)", [input.resource.tool, server, pattern]) if {
	input.action in {"call", "list"}
	some pattern in object.get(settings, "deny", [])
	names(pattern, input.resource.tool)
}

# Whether "SERVER/NAME" pattern names `name` of this server: the server's part to the first
# `/`, the name's part after it, each matched whole (`*` crosses `/` and `.` in a name: a
# tool named `repo/delete` is one of `evil/*`).
names(pattern, name) if {
	at := indexof(pattern, "/")
	at >= 0
	glob.match(substring(pattern, 0, at), null, server)
	glob.match(substring(pattern, at + 1, -1), null, name)
}

refusals contains sprintf("the definition of tool `%s` of server `%s` changed since it was pinned (%s then, %s now): read it, then accept it with `cordon mcp --accept-changed %s`", [input.resource.tool, server, input.resource.definition.pinned, input.resource.definition.sha256, tool_name]) if {
	input.action in {"call", "list"}
	input.resource.definition.changed == true
}

refusals contains sprintf("tool `%s` of server `%s` was not listed in this session, so its definition was never checked against its pin: list the tools first", [input.resource.tool, server]) if {
	input.action == "call"
	input.resource.definition.listed == false
}

refusals contains sprintf("resource `%s` of server `%s` is denied by the settings (`%s`)", [uri, server, pattern]) if {
	input.action in {"read_resource", "list_resources", "subscribe_resource"}
	some pattern in object.get(settings, "deny_resources", [])
	some uri in {input.resource.uri, object.get(input.resource, "uri_as_sent", input.resource.uri)}
	glob.match(pattern, null, uri)
}

refusals contains sprintf("prompt `%s` of server `%s` is denied by the settings (`%s`)", [input.resource.prompt, server, pattern]) if {
	input.action in {"get_prompt", "list_prompts"}
	some pattern in object.get(settings, "deny_prompts", [])
	names(pattern, input.resource.prompt)
}

asked if {
	some pattern in object.get(settings, "ask", [])
	names(pattern, input.resource.tool)
	not remembered
}

# The person allowed it for always, at an earlier question.
remembered if data.cordon.remembered.tool[tool_name]

allowed := sprintf("tool `%s` of server `%s` is not denied by the settings", [input.resource.tool, server]) if {
	input.action in {"call", "list"}
	is_string(input.resource.tool)
}

allowed := sprintf("resource `%s` of server `%s` is not denied by the settings", [input.resource.uri, server]) if {
	input.action in {"read_resource", "list_resources", "subscribe_resource"}
	is_string(input.resource.uri)
}

allowed := sprintf("prompt `%s` of server `%s` is not denied by the settings", [input.resource.prompt, server]) if {
	input.action in {"get_prompt", "list_prompts"}
	is_string(input.resource.prompt)
}

allowed := sprintf("method `%s` is let through by the settings", [input.resource.method]) if {
	input.action == "method"
	input.resource.method in object.get(settings, "methods", [])
}

allowed := sprintf("messages of server `%s` are relayed, redacted as the settings say", [server]) if {
	input.action == "relay"
}

allowed := sprintf("a server may ask its client `%s`", [input.resource.method]) if {
	input.action == "server_request"
	input.resource.method in object.get(settings, "server_requests", [])
}

# What a listing shows carries nothing; what is used carries the person's answer when
# asked, the redaction and the rate limit.
obligations := [] if {
	input.action in {"list", "list_resources", "list_prompts"}
} else := redact if {
	input.action == "relay"
} else := array.concat(consent, array.concat(redact, limit))

consent := [{"type": "consent", "key": sprintf("tool:%s", [tool_name])}] if {
	input.action == "call"
	asked
} else := []

redact := [{"type": "redact", "patterns": settings.redact}] if {
	count(object.get(settings, "redact", [])) > 0
} else := []

limit := [{"type": "limit", "per_minute": settings.per_minute}] if {
	object.get(settings, "per_minute", 0) > 0
} else := []
