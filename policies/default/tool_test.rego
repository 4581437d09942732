package cordon.tool_test

import rego.v1

import data.cordon.tool

call(server, name) := {
	"capability": "tool",
	"action": "call",
	"resource": {"server": {"name": server, "command": ["srv"]}, "tool": name, "arguments": {}},
}

test_a_tool_is_allowed_by_default if {
	tool.decision.allow with input as call("files", "read_file")
}

test_a_denied_tool_is_refused_with_the_pattern if {
	d := tool.decision with input as call("files", "delete_all")
		with data.cordon.settings.tool as {"deny": ["*/delete_*"]}
	not d.allow
	contains(d.reasons[0], "*/delete_*")
}

test_a_pattern_names_the_server_too if {
	tool.decision.allow with input as call("notes", "delete_all")
		with data.cordon.settings.tool as {"deny": ["files/*"]}
}

test_another_action_is_refused if {
	not tool.decision.allow with input as object.union(call("files", "x"), {"action": "sample"})
}

test_a_changed_definition_is_refused_until_accepted if {
	changed := object.union(call("files", "read_file"), {"resource": {"definition": {"sha256": "b", "pinned": "a", "changed": true}}})
	d := tool.decision with input as changed
	not d.allow
	contains(d.reasons[0], "--accept-changed files/read_file")
	same := object.union(call("files", "read_file"), {"resource": {"definition": {"sha256": "a", "pinned": "a", "changed": false}}})
	tool.decision.allow with input as same
}
