package cordon.file_test

import data.cordon.file
import rego.v1

ctx := {"home": "/home/alice", "workspace": ["/home/alice/work"]}

req(action, path, level) := {
	"capability": "file",
	"action": action,
	"resource": {"path": path, "sensitivity": ["public", "internal", "confidential", "restricted"][level], "sensitivity_level": level},
	"context": ctx,
}

test_read_in_workspace_allowed if {
	d := file.decision with input as req("read", "/home/alice/work/src/main.rs", 1)
	d.allow
	d.obligations == []
	d.reasons == ["`/home/alice/work/src/main.rs` is inside the workspace `/home/alice/work`"]
}

test_workspace_root_itself_allowed if {
	file.decision.allow with input as req("list", "/home/alice/work", 1)
}

test_write_in_workspace_is_journaled if {
	d := file.decision with input as req("write", "/home/alice/work/out.txt", 1)
	d.allow
	d.obligations == [{"type": "journal"}]
}

test_sibling_with_common_prefix_denied if {
	d := file.decision with input as req("read", "/home/alice/work-old/notes.txt", 1)
	not d.allow
	d.reasons == ["`/home/alice/work-old/notes.txt` is outside the workspace [\"/home/alice/work\"]"]
}

test_outside_workspace_denied if {
	not file.decision.allow with input as req("read", "/etc/hostname", 0)
}

test_ssh_key_denied if {
	d := file.decision with input as req("read", "/home/alice/.ssh/id_ed25519", 0)
	not d.allow
	d.reasons == ["`/home/alice/.ssh/id_ed25519` is a credentials or secrets location: agents may never read it"]
}

test_every_home_secret_denied if {
	every rel in data.cordon.settings.secrets.home {
		p := concat("", ["/home/alice/", rel, "x"])
		not file.decision.allow with input as req("read", p, 0)
	}
}

test_secret_inside_workspace_still_denied if {
	w := {"home": "/home/alice", "workspace": ["/home/alice"]}
	not file.decision.allow with input as object.union(req("read", "/home/alice/.aws/credentials", 0), {"context": w})
	file.decision.allow with input as object.union(req("read", "/home/alice/notes.md", 0), {"context": w})
}

test_system_secrets_denied if {
	not file.decision.allow with input as req("read", "/etc/shadow", 0) with input.context.workspace as ["/"]
	not file.decision.allow with input as req("read", "/etc/ssh/ssh_host_ed25519_key", 0) with input.context.workspace as ["/"]
	file.decision.allow with input as req("read", "/etc/ssh/ssh_config", 0) with input.context.workspace as ["/"]
}

test_confidential_needs_consent if {
	d := file.decision with input as req("read", "/home/alice/work/plan.pdf", 2)
	d.allow
	d.obligations == [{"type": "consent", "message": "Allow the agent to read confidential file `/home/alice/work/plan.pdf`?"}]
}

test_restricted_write_needs_consent_and_journal if {
	d := file.decision with input as req("write", "/home/alice/work/payroll.xlsx", 3)
	d.allow
	count(d.obligations) == 2
	{o.type | some o in d.obligations} == {"consent", "journal"}
}

test_internal_read_needs_no_consent if {
	d := file.decision with input as req("read", "/home/alice/work/a", 1)
	d.obligations == []
}

test_unknown_action_denied if {
	d := file.decision with input as req("exfiltrate", "/home/alice/work/a", 0)
	not d.allow
	d.reasons == ["unknown file action `exfiltrate`"]
}

test_missing_path_denied if {
	d := file.decision with input as {"action": "read", "resource": {}, "context": ctx}
	not d.allow
	"file request has no `resource.path`" in d.reasons
}

test_missing_home_denied if {
	d := file.decision with input as {"action": "read", "resource": {"path": "/home/alice/work/a"}, "context": {"workspace": ["/home/alice/work"]}}
	not d.allow
	d.reasons == ["file request has no `context.home`, so secrets locations cannot be ruled out"]
}

test_no_workspace_denies if {
	not file.decision.allow with input as req("read", "/home/alice/work/a", 0) with input.context.workspace as []
}

test_secret_entry_matches_itself_and_below_only if {
	not file.decision.allow with input as req("read", "/home/alice/.ssh", 0) with input.context.workspace as ["/home/alice"]
	not file.decision.allow with input as req("read", "/home/alice/.netrc", 0) with input.context.workspace as ["/home/alice"]
	not file.decision.allow with input as req("read", "/home/alice/.var/app/org.mozilla.firefox/c.sqlite", 0) with input.context.workspace as ["/home/alice"]
	file.decision.allow with input as req("read", "/home/alice/.sshrc", 0) with input.context.workspace as ["/home/alice"]
	file.decision.allow with input as req("read", "/home/alice/.netrc.bak", 0) with input.context.workspace as ["/home/alice"]
	file.decision.allow with input as req("read", "/home/alice/code/.ssh/notes", 0) with input.context.workspace as ["/home/alice"]
	file.decision.allow with input as req("read", "/home/alice/.config/app.toml", 0) with input.context.workspace as ["/home/alice"]
}

test_home_of_another_user_is_not_mistaken if {
	file.decision.allow with input as req("read", "/home/alicex/.ssh/id_rsa", 0) with input.context.workspace as ["/home"]
}

test_system_prefix_entry if {
	not file.decision.allow with input as req("read", "/etc/ssh/ssh_host_rsa_key.pub", 0) with input.context.workspace as ["/"]
	file.decision.allow with input as req("read", "/etc/shadowsocks.json", 0) with input.context.workspace as ["/"]
}

test_within_root_and_below if {
	file.decision.allow with input as req("read", "/srv/a", 0) with input.context.workspace as ["/srv/a/"]
	file.decision.allow with input as req("read", "/etc/hosts", 0) with input.context.workspace as ["/"]
	not file.decision.allow with input as req("read", "/srv", 0) with input.context.workspace as ["/srv/a"]
}

test_secret_entries_are_well_formed if {
	every e in data.cordon.settings.secrets.home {
		endswith(e, "/")
		not startswith(e, "/")
	}
	every e in data.cordon.settings.secrets.system {
		startswith(e, "/")
	}
}

test_cordons_own_paths_are_never_reachable if {
	d := file.decision with input as {
		"capability": "file", "action": "write",
		"resource": {"path": "/home/alice/proj/cache/cordon/skills/x.cwasm"},
		"context": {
			"home": "/home/alice", "workspace": ["/home/alice/proj"],
			"cordon_paths": ["/home/alice/proj/cache/cordon"],
		},
	}
	not d.allow
	contains(d.reasons[0], "cordon's own")
	d2 := file.decision with input as {
		"capability": "file", "action": "read",
		"resource": {"path": "/home/alice/proj/cache/cordon"},
		"context": {
			"home": "/home/alice", "workspace": ["/home/alice/proj"],
			"cordon_paths": ["/home/alice/proj/cache/cordon/"],
		},
	}
	not d2.allow
}

test_a_file_with_several_names_needs_the_persons_answer if {
	d := file.decision with input as {
		"capability": "file", "action": "read",
		"resource": {"path": "/home/alice/proj/innocent.txt", "kind": "file", "links": 2},
		"context": {"home": "/home/alice", "workspace": ["/home/alice/proj"]},
	}
	d.allow
	asks := [o.message | some o in d.obligations; o.type == "consent"]
	contains(asks[0], "2 names")
	d2 := file.decision with input as {
		"capability": "file", "action": "read",
		"resource": {"path": "/home/alice/proj/dir", "kind": "directory", "links": 5},
		"context": {"home": "/home/alice", "workspace": ["/home/alice/proj"]},
	}
	count([o2 | some o2 in d2.obligations; o2.type == "consent"]) == 0
}
