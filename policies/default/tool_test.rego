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

test_a_call_carries_the_redaction_and_the_rate_limit if {
	d := tool.decision with input as call("files", "read_file")
		with data.cordon.settings.tool as {"redact": ["cloud_key"], "per_minute": 5}
	d.allow
	d.obligations == [{"type": "redact", "patterns": ["cloud_key"]}, {"type": "limit", "per_minute": 5}]
}

test_a_listing_carries_nothing if {
	d := tool.decision with input as object.union(call("files", "read_file"), {"action": "list"})
		with data.cordon.settings.tool as {"redact": ["cloud_key"], "per_minute": 5}
	d.allow
	d.obligations == []
}

test_an_unlisted_tool_is_refused if {
	unlisted := object.union(call("files", "read_file"), {"resource": {"definition": {"listed": false}}})
	d := tool.decision with input as unlisted
	not d.allow
	contains(d.reasons[0], "was not listed in this session")
}

asking(interactive) := object.union(call("files", "delete_all"), {"context": {"consent": {"interactive": interactive}}})

test_an_asked_tool_needs_consent_where_someone_can_answer if {
	d := tool.decision with input as asking(true)
		with data.cordon.settings.tool as {"ask": ["files/delete_*"]}
	d.allow
	d.obligations[0] == {"type": "consent", "key": "tool:files/delete_all"}
	d2 := tool.decision with input as asking(false)
		with data.cordon.settings.tool as {"ask": ["files/delete_*"]}
	not d2.allow
	contains(d2.reasons[0], "--consent socket")
	d3 := tool.decision with input as asking(false)
		with data.cordon.settings.tool as {"ask": ["files/read_*"]}
	d3.allow
}

resource(action, uri) := {
	"capability": "tool", "action": action,
	"resource": {"server": {"name": "files", "command": ["srv"]}, "uri": uri},
}

test_resources_are_refused_and_hidden_by_pattern if {
	not tool.decision.allow with input as resource("read_resource", "file:///home/a/.ssh/id_rsa")
		with data.cordon.settings.tool as {"deny_resources": ["file://*/.ssh/*"]}
	not tool.decision.allow with input as resource("list_resources", "file:///home/a/.ssh/id_rsa")
		with data.cordon.settings.tool as {"deny_resources": ["file://*/.ssh/*"]}
	tool.decision.allow with input as resource("read_resource", "file:///home/a/notes.md")
		with data.cordon.settings.tool as {"deny_resources": ["file://*/.ssh/*"]}
}

test_prompts_are_refused_by_pattern if {
	get := {"capability": "tool", "action": "get_prompt", "resource": {"server": {"name": "files"}, "prompt": "leak", "arguments": {}}}
	not tool.decision.allow with input as get with data.cordon.settings.tool as {"deny_prompts": ["files/leak"]}
	tool.decision.allow with input as get with data.cordon.settings.tool as {"deny_prompts": ["other/*"]}
}

method(action, name) := {
	"capability": "tool", "action": action,
	"resource": {"server": {"name": "files"}, "method": name, "params": {}},
}

test_methods_outside_the_specification_pass_only_when_listed if {
	not tool.decision.allow with input as method("method", "x/exfiltrate")
	tool.decision.allow with input as method("method", "x/ok") with data.cordon.settings.tool as {"methods": ["x/ok"]}
}

test_a_server_asks_the_client_only_what_the_settings_let_it if {
	tool.decision.allow with input as method("server_request", "sampling/createMessage")
	tool.decision.allow with input as method("server_request", "roots/list")
	not tool.decision.allow with input as method("server_request", "tools/call")
}

test_every_refusal_is_given if {
	d := tool.decision with input as object.union(call("files", "delete_all"), {"resource": {"definition": {"listed": false}}})
		with data.cordon.settings.tool as {"deny": ["files/delete_*"]}
	count(d.reasons) == 2
}

test_a_resource_pattern_crosses_dots_and_matches_the_form_sent if {
	settings := {"deny_resources": ["file:///secret/*"]}
	not tool.decision.allow with input as resource("read_resource", "file:///secret/key.pem")
		with data.cordon.settings.tool as settings
	sent := object.union(resource("read_resource", "file:///other"), {"resource": {"uri_as_sent": "file:///secret/.env"}})
	not tool.decision.allow with input as sent with data.cordon.settings.tool as settings
}

test_the_relay_carries_the_redaction_only if {
	d := tool.decision with input as {"capability": "tool", "action": "relay", "resource": {"server": {"name": "files"}}}
		with data.cordon.settings.tool as {"redact": ["token"], "per_minute": 5}
	d.allow
	d.obligations == [{"type": "redact", "patterns": ["token"]}]
}

test_an_answer_for_always_is_not_asked_again if {
	d := tool.decision with input as asking(false)
		with data.cordon.settings.tool as {"ask": ["files/delete_*"]}
		with data.cordon.remembered.tool as {"files/delete_all": true}
	d.allow
	d.obligations == []
}

test_a_pattern_covers_tool_names_holding_a_slash if {
	not tool.decision.allow with input as call("evil", "repo/delete")
		with data.cordon.settings.tool as {"deny": ["evil/*"]}
	tool.decision.allow with input as call("good", "repo/delete")
		with data.cordon.settings.tool as {"deny": ["evil/*"]}
	not tool.decision.allow with input as call("evil", "a.b")
		with data.cordon.settings.tool as {"deny": ["*/*"]}
}

test_a_denied_resource_cannot_be_subscribed_to if {
	not tool.decision.allow with input as resource("subscribe_resource", "file:///secret/key")
		with data.cordon.settings.tool as {"deny_resources": ["file:///secret/*"]}
	tool.decision.allow with input as resource("subscribe_resource", "file:///notes.md")
}
