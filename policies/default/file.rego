# Files an agent may read and write: the workspace the person chose, minus secrets.
package cordon.file

import data.cordon.lib.paths
import rego.v1

settings := data.cordon.settings.file

default decision := {
	"allow": false,
	"reasons": ["no rule allows this file access; denying by default"],
	"obligations": [],
}

decision := {"allow": false, "reasons": sort([r | some r in deny]), "obligations": []} if {
	count(deny) > 0
} else := {"allow": true, "reasons": [allow_reason], "obligations": [o | some o in obligations]} if {
	allow_reason
} else := {"allow": false, "reasons": [outside_reason], "obligations": []}

is_read if input.action in settings.read_actions

is_write if input.action in settings.write_actions

deny contains "file request has no `resource.path`" if not input.resource.path

deny contains msg if {
	not is_read
	not is_write
	msg := sprintf("unknown file action `%v`", [input.action])
}

deny contains msg if {
	paths.is_secret(input.resource.path, input.context.home)
	msg := sprintf("`%s` is a credentials or secrets location: agents may never %s it", [input.resource.path, input.action])
}

workspace_root := root if {
	some root in input.context.workspace
	paths.within(input.resource.path, root)
}

allow_reason := sprintf("`%s` is inside the workspace `%s`", [input.resource.path, workspace_root])

outside_reason := sprintf("`%s` is outside the workspace %v", [input.resource.path, input.context.workspace])

# Confidential and restricted files need the person's consent, every time.
obligations contains {"type": "consent", "message": msg} if {
	input.resource.sensitivity_level >= 2
	msg := sprintf("Allow the agent to %s %s file `%s`?", [input.action, input.resource.sensitivity, input.resource.path])
}

# Every write is journaled so it can be undone.
obligations contains {"type": "journal"} if is_write
