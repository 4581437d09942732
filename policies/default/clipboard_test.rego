package cordon.clipboard_test

import data.cordon.clipboard
import rego.v1

use(action, bytes) := {
	"capability": "clipboard",
	"action": action,
	"subject": {"skill": {"name": "clip", "sha256": "ab12"}},
	"resource": {"bytes": bytes},
}

test_a_skill_may_write_the_clipboard_within_the_size if {
	clipboard.decision.allow with input as use("write", 12)
	not clipboard.decision.allow with input as use("write", 2000000)
}

test_reading_the_clipboard_asks_the_person if {
	d := clipboard.decision with input as use("read", null)
	d.allow
	d.obligations[0].type == "consent"
	contains(d.obligations[0].message, "skill `clip`")
}

test_anything_else_is_denied if {
	not clipboard.decision.allow with input as use("clear", null)
}
