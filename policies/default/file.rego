# Files an agent may read and write: the workspace the person chose, minus secrets.
#
# The rules are written for the bytecode VM: few rules, no helper functions, and one builtin
# call (strings.any_prefix_match) to test a path against every secrets location.
package cordon.file

import rego.v1

default decision := {
	"allow": false,
	"reasons": ["no rule allows this file access; denying by default"],
	"obligations": [],
}

decision := {"allow": false, "reasons": [r | some r in deny], "obligations": []} if {
	count(deny) > 0
} else := {
	"allow": true,
	"reasons": [sprintf("`%s` is inside the workspace `%s`", [input.resource.path, workspace_root])],
	"obligations": [o | some o in obligations],
} if {
	workspace_root
} else := {
	"allow": false,
	"reasons": [sprintf("`%s` is outside the workspace %v", [input.resource.path, input.context.workspace])],
	"obligations": [],
}

deny contains "file request has no `resource.path`" if not input.resource.path

# Without the home directory the secrets under it cannot be recognised: refuse.
deny contains "file request has no `context.home`, so secrets locations cannot be ruled out" if {
	not input.context.home
}

deny contains msg if {
	not data.cordon.settings.file.read_actions[input.action]
	not data.cordon.settings.file.write_actions[input.action]
	msg := sprintf("unknown file action `%v`", [input.action])
}

deny contains msg if {
	is_secret
	msg := sprintf(
		"`%s` is a credentials or secrets location: agents may never %s it",
		[input.resource.path, input.action],
	)
}

# cordon's own configuration, policy, state, cache and sessions (`context.cordon_paths`,
# given where cordon decides a program's files, as for a WebAssembly skill): an agent that
# could change them would set the next run's policy or code.
deny contains msg if {
	some own in object.get(input.context, "cordon_paths", [])
	startswith(concat("", [input.resource.path, "/"]), concat("", [trim_suffix(own, "/"), "/"]))
	msg := sprintf("`%s` is cordon's own (`%s`: its policy, configuration, state or cache); agents may never %s it", [input.resource.path, own, input.action])
}

# Secrets locations are data.cordon.settings.secrets.home (relative to the home directory)
# and .system (absolute). An entry ending in `/` names a file or directory and matches it and
# everything below it (`.ssh/` matches `~/.ssh` and `~/.ssh/id_rsa`, not `~/.sshrc`); any
# other entry is a plain prefix (`/etc/ssh/ssh_host_`). Paths in the input are absolute,
# normalised and resolved by cordon, so the prefix tests are exact.
home_relative := concat("", [substring(input.resource.path, count(input.context.home) + 1, -1), "/"]) if {
	startswith(input.resource.path, concat("", [input.context.home, "/"]))
}

is_secret if strings.any_prefix_match(home_relative, data.cordon.settings.secrets.home)

is_secret if strings.any_prefix_match(concat("", [input.resource.path, "/"]), data.cordon.settings.secrets.system)

# The workspace root the path lies in (or is).
workspace_root := root if {
	some root in input.context.workspace
	startswith(concat("", [input.resource.path, "/"]), concat("", [trim_suffix(root, "/"), "/"]))
}

# Confidential and restricted files need the person's consent, every time.
obligations contains {"type": "consent", "message": msg} if {
	input.resource.sensitivity_level >= 2
	msg := sprintf(
		"Allow the agent to %s %s file `%s`?",
		[input.action, input.resource.sensitivity, input.resource.path],
	)
}

# A file with more than one name (hard links) may be a second name for one the rules above
# refuse by its path: the person is asked.
obligations contains {"type": "consent", "message": msg} if {
	input.resource.kind == "file"
	input.resource.links > 1
	msg := sprintf(
		"`%s` has %d names (hard links): it may be a second name for a file kept elsewhere. Allow the agent to %s it?",
		[input.resource.path, input.resource.links, input.action],
	)
}

# Every write is journaled so it can be undone.
obligations contains {"type": "journal"} if data.cordon.settings.file.write_actions[input.action]
