package cordon.env_test

import data.cordon.env
import rego.v1

var(name) := {"capability": "env", "action": "read", "resource": {"name": name}}

test_credentials_are_secret if {
	every name in ["GITHUB_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "NPM_AUTH", "SENTRY_DSN", "SSH_AUTH_SOCK", "gh_pat"] {
		not env.decision.allow with input as var(name)
	}
}

test_the_secret_pattern_matches_anywhere_in_a_name_in_any_case if {
	every name in ["GITHUB_TOKEN", "github_token", "MyApiKey", "X_AUTH", "AUTH_X", "AUTH", "gh_pat", "PAT", "SENTRY_DSN", "SESSIONID", "A\nTOKEN"] {
		env.secret(name)
	}
	every name in ["AUTHOR", "OAUTH_X", "PATH", "XPAT", "DSN_X", "HOME", "A\nAUTHOR"] {
		not env.secret(name)
	}
}

test_ordinary_variables_pass if {
	every name in ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "GIT_AUTHOR_NAME", "CARGO_HOME", "EDITOR", "SSL_CERT_FILE"] {
		env.decision.allow with input as var(name)
	}
}

test_names_the_pattern_misses_are_not_on_the_allowlist if {
	every name in ["OPENAI_KEY", "SUPABASE_SERVICE_ROLE_KEY", "SMTP_PASS", "MYSQL_PWD", "SLACK_WEBHOOK_URL", "AZURE_STORAGE_CONNECTION_STRING", "REDIS_URL"] {
		not env.decision.allow with input as var(name)
	}
	d := env.decision with input as var("SMTP_PASS")
	d.reasons == ["`SMTP_PASS` is not in the environment allowlist (data.cordon.settings.env.allow); --keep-env SMTP_PASS passes it"]
}

test_a_value_with_url_credentials_is_secret if {
	not env.decision.allow with input as object.union(var("PIP_CERT"), {"context": {"env_credentials": ["PIP_CERT"]}})
}

test_reason_names_the_variable if {
	d := env.decision with input as var("GITHUB_TOKEN")
	d.reasons == ["`GITHUB_TOKEN` looks like a credential and is not passed to agents"]
}

test_request_without_name_is_denied if {
	not env.decision.allow with input as {"capability": "env", "action": "read", "resource": {}}
}
