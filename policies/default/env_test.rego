package cordon.env_test

import data.cordon.env
import rego.v1

var(name) := {"capability": "env", "action": "read", "resource": {"name": name}}

test_credentials_are_secret if {
	every name in ["GITHUB_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "NPM_AUTH", "SENTRY_DSN", "SSH_AUTH_SOCK", "gh_pat"] {
		not env.decision.allow with input as var(name)
	}
}

test_ordinary_variables_pass if {
	every name in ["PATH", "HOME", "LANG", "TERM", "GIT_AUTHOR_NAME", "CARGO_HOME", "EDITOR"] {
		env.decision.allow with input as var(name)
	}
}

test_reason_names_the_variable if {
	d := env.decision with input as var("GITHUB_TOKEN")
	d.reasons == ["`GITHUB_TOKEN` looks like a credential and is not passed to agents"]
}

test_request_without_name_is_denied if {
	not env.decision.allow with input as {"capability": "env", "action": "read", "resource": {}}
}
