package cordon.infer_test

import data.cordon.infer
import rego.v1

req(host, level) := {
	"capability": "infer",
	"action": "complete",
	"resource": {"host": host, "sensitivity": ["public", "internal", "confidential", "restricted"][level], "sensitivity_level": level},
}

test_restricted_to_remote_model_denied if {
	d := infer.decision with input as req("api.openai.com", 3)
	not d.allow
	d.reasons == ["restricted data never leaves the device: model `api.openai.com` is remote"]
}

test_restricted_to_local_model_allowed if {
	infer.decision.allow with input as req("127.0.0.1", 3)
}

test_confidential_to_remote_model_needs_consent if {
	d := infer.decision with input as req("api.anthropic.com", 2)
	d.allow
	[o.type | some o in d.obligations] == ["consent"]
}

test_internal_to_remote_model_allowed if {
	d := infer.decision with input as req("api.anthropic.com", 1)
	d.allow
	d.obligations == []
}

test_unlabelled_level_denied if {
	not infer.decision.allow with input as {"action": "complete", "resource": {"host": "api.openai.com"}}
}
