package cordon.sandbox_test

import data.cordon.sandbox
import rego.v1

launch(request) := {
	"capability": "sandbox",
	"action": "launch",
	"resource": {"command": ["bash"], "cwd": "/home/alice/proj"},
	"context": {
		"home": "/home/alice",
		"workspace": ["/home/alice/proj"],
		"env": ["PATH", "HOME", "GITHUB_TOKEN", "SSH_AUTH_SOCK", "GIT_AUTHOR_NAME", "LANG"],
		"request": request,
	},
}

test_workspace_is_writable_and_system_readable if {
	d := sandbox.decision with input as launch({})
	d.allow
	d.grants.write == ["/home/alice/proj"]
	"/usr" in d.grants.read
	"/etc" in d.grants.read
	"/home/alice/.rustup" in d.grants.read
}

test_secret_locations_are_masked if {
	d := sandbox.decision with input as launch({})
	"/home/alice/.ssh/" in d.grants.mask
	"/etc/shadow/" in d.grants.mask
	"/etc/ssh/ssh_host_" in d.grants.mask
}

test_requested_paths_are_granted if {
	d := sandbox.decision with input as launch({"read": ["/data/corpus"], "write": ["/home/alice/out"]})
	d.allow
	"/data/corpus" in d.grants.read
	d.grants.write == ["/home/alice/out", "/home/alice/proj"]
}

test_secret_location_refused_whatever_is_asked if {
	d := sandbox.decision with input as launch({"read": ["/home/alice/.ssh/id_ed25519"]})
	not d.allow
	d.reasons == ["`/home/alice/.ssh/id_ed25519` is a credentials or secrets location: agents may never be granted it"]
	not sandbox.decision.allow with input as launch({"write": ["/home/alice/.aws"]})
	not sandbox.decision.allow with input as launch({"read": ["/etc/shadow"]})
}

test_lookalike_of_a_secret_is_not_a_secret if {
	sandbox.decision.allow with input as launch({"read": ["/home/alice/.sshrc"]})
}

test_system_directories_are_never_writable if {
	d := sandbox.decision with input as launch({"write": ["/usr/local"]})
	not d.allow
	d.reasons == ["`/usr/local` is or holds a system directory: sandboxes may read it, never write it"]
	not sandbox.decision.allow with input as launch({"write": ["/"]})
}

test_workspace_at_the_root_is_not_writable if {
	d := sandbox.decision with input as object.union(launch({}), {"context": {"workspace": ["/"]}})
	d.allow
	d.grants.write == []
}

test_protected_files_inside_writable_trees if {
	d := sandbox.decision with input as launch({})
	"/home/alice/proj/.git/hooks" in d.grants.protect
	"/home/alice/proj/.mcp.json" in d.grants.protect
	"/home/alice/.bashrc" in d.grants.protect
}

test_cordon_paths_are_protected if {
	d := sandbox.decision with input as object.union(launch({}), {"context": {"cordon_paths": ["/home/alice/proj/policy"]}})
	"/home/alice/proj/policy" in d.grants.protect
}

test_credentials_are_scrubbed_from_the_environment if {
	d := sandbox.decision with input as launch({})
	d.grants.env == ["GIT_AUTHOR_NAME", "HOME", "LANG", "PATH"]
}

test_keep_env_keeps_what_the_person_names if {
	d := sandbox.decision with input as launch({"keep_env": ["GITHUB_TOKEN"]})
	"GITHUB_TOKEN" in d.grants.env
	not "SSH_AUTH_SOCK" in d.grants.env
}

test_limits_and_requirements_come_from_settings if {
	d := sandbox.decision with input as launch({})
	d.grants.limits == {"pids": 1024, "memory_bytes": 8589934592}
	"landlock" in d.grants.require
}

test_launch_without_home_or_command_is_refused if {
	not sandbox.decision.allow with input as {"capability": "sandbox", "action": "launch", "resource": {"command": ["x"]}, "context": {}}
	not sandbox.decision.allow with input as object.union(launch({}), {"resource": {"command": []}})
}

test_tcp_ports_only_when_the_settings_name_them if {
	d := sandbox.decision with input as launch({})
	not d.grants.tcp
	t := sandbox.decision with input as launch({}) with data.cordon.settings.sandbox.tcp as {"bind": [], "connect": [443]}
	t.grants.tcp == {"bind": [], "connect": [443]}
}

launched_in(cwd) := object.union(launch({}), {"resource": {"command": ["bash"], "cwd": cwd}, "context": {"workspace": [cwd]}})

test_home_and_shared_directories_are_not_workspaces if {
	every cwd in ["/home/alice", "/home", "/tmp", "/var/tmp", "/run", "/run/user/1000", "/dev/shm"] {
		not sandbox.decision.allow with input as launched_in(cwd)
	}
	d := sandbox.decision with input as launched_in("/home/alice")
	d.reasons == ["the workspace `/home/alice` (the current directory) is your home directory: cordon exec makes the workspace writable, so start it from a project directory, or pass --unsafe-broad-write"]
	sandbox.decision.allow with input as launched_in("/tmp/build")
}

test_broad_write_grants_need_the_explicit_flag if {
	not sandbox.decision.allow with input as launch({"write": ["/home/alice"]})
	not sandbox.decision.allow with input as launch({"write": ["/tmp"]})
	d := sandbox.decision with input as launch({"write": ["/tmp"], "broad_write": true})
	d.allow
	"/tmp" in d.grants.write
}

test_environment_is_an_allowlist if {
	d := sandbox.decision with input as object.union(launch({"keep_env": ["MY_TOOL_FLAG"]}), {"context": {
		"env": ["PATH", "LANG", "LC_ALL", "OPENAI_KEY", "SMTP_PASS", "PIP_INDEX_URL", "MY_TOOL_FLAG", "SSL_CERT_FILE"],
		"env_credentials": ["SSL_CERT_FILE"],
	}})
	d.grants.env == ["LANG", "LC_ALL", "MY_TOOL_FLAG", "PATH"]
}

test_socket_directories_are_refused if {
	every path in ["/run", "/run/user/1000", "/var/run/docker.sock", "/tmp/.X11-unix", "/tmp/ssh-XXXX/agent.1", "/tmp/tmux-1000", "/tmp", "/"] {
		not sandbox.decision.allow with input as launch({"read": [path]})
	}
	d := sandbox.decision with input as launch({"read": ["/run/user/1000"]})
	d.reasons == ["`/run/user/1000` holds the sockets of other programs (session bus, agents, display, container engines): a sandbox may not reach them"]
	sandbox.decision.allow with input as launch({"read": ["/tmp/build-cache"]})
}

test_memory_cap_is_sized_to_the_machine if {
	small := sandbox.decision with input as object.union(launch({}), {"context": {"machine": {"memory_bytes": 4294967296}}})
	small.grants.limits == {"pids": 1024, "memory_bytes": 2147483648}
	large := sandbox.decision with input as object.union(launch({}), {"context": {"machine": {"memory_bytes": 68719476736}}})
	large.grants.limits.memory_bytes == 8589934592
	named := sandbox.decision with input as object.union(launch({}), {"context": {"machine": {"memory_bytes": 4294967296}}})
		with data.cordon.settings.sandbox.limits as {"pids": 64, "memory_bytes": 1048576}
	named.grants.limits == {"pids": 64, "memory_bytes": 1048576}
}

test_system_trees_are_not_write_grants if {
	every path in ["/var", "/home", "/srv", "/root", "/boot", "/var/lib"] {
		not sandbox.decision.allow with input as launch({"write": [path]})
	}
	as_root := object.union(launch({"write": ["/var/spool/cron"]}), {"context": {"as_root": true}})
	not sandbox.decision.allow with input as as_root
	sandbox.decision.allow with input as launch({"write": ["/var/spool/cron"]})
}

test_config_home_elsewhere_is_protected_too if {
	d := sandbox.decision with input as object.union(launch({}), {"context": {"config_home": "/home/alice/proj/cfg"}})
	"/home/alice/proj/cfg/systemd" in d.grants.protect
	"/home/alice/.config/systemd" in d.grants.protect
}

test_a_write_grant_holding_secrets_needs_the_flag if {
	d := sandbox.decision with input as launch({"write": ["/home/alice/.config"]})
	not d.allow
	some reason in d.reasons
	startswith(reason, "`/home/alice/.config` holds secret locations")
	sandbox.decision.allow with input as launch({"write": ["/home/alice/.config"], "broad_write": true})
	sandbox.decision.allow with input as launch({"write": ["/home/alice/.config/myapp"]})
}

test_cordon_paths_are_never_write_grants if {
	own := {"context": {"cordon_paths": ["/home/alice/.config/cordon", "/run/user/1000/cordon"]}}
	# The sessions directory itself, one session's directory, the policy below the config.
	every write in [["/run/user/1000/cordon"], ["/run/user/1000/cordon/0123456789ab"], ["/home/alice/.config/cordon/policy"]] {
		d := sandbox.decision with input as object.union(launch({"write": write, "broad_write": true}), own)
		not d.allow
		some reason in d.reasons
		contains(reason, "is cordon's own")
	}
}

test_a_workspace_inside_cordons_paths_is_refused if {
	input_doc := object.union(launch({}), {"context": {
		"workspace": ["/home/alice/.config/cordon/policy"],
		"cordon_paths": ["/home/alice/.config/cordon"],
	}})
	d := sandbox.decision with input as input_doc
	not d.allow
}

test_a_write_grant_above_cordons_paths_keeps_them_protected if {
	d := sandbox.decision with input as object.union(launch({}), {"context": {"cordon_paths": ["/home/alice/proj/.cordon-state"]}})
	d.allow
	"/home/alice/proj/.cordon-state" in d.grants.protect
}

interactive(request) := object.union(launch(request), {"context": {"consent": {"interactive": true}}})

test_a_personal_folder_is_granted_once_the_person_answers if {
	d := sandbox.decision with input as interactive({"read": ["/home/alice/Documents/taxes"]})
	d.allow
	"/home/alice/Documents/taxes" in d.grants.read
	d.obligations == [{
		"type": "consent",
		"key": "sandbox:read:/home/alice/Documents/taxes",
		"message": "Let `bash` see your personal folder `/home/alice/Documents/taxes`?",
	}]

	# Asked about writing too, and said so.
	w := sandbox.decision with input as interactive({"write": ["/home/alice/Desktop"]})
	w.obligations[0].key == "sandbox:write:/home/alice/Desktop"
	w.obligations[0].message == "Let `bash` change your personal folder `/home/alice/Desktop`?"

	# A grant of the home holds them all: asked too.
	h := sandbox.decision with input as interactive({"read": ["/home/alice"]})
	h.obligations[0].key == "sandbox:read:/home/alice"
	h.obligations[0].message == "Let `bash` see `/home/alice`, which holds your personal folders?"
}

test_a_personal_folder_is_refused_when_no_one_can_be_asked if {
	d := sandbox.decision with input as launch({"read": ["/home/alice/Pictures"]})
	not d.allow
	contains(d.reasons[0], "personal folder")

	# Other paths, and a workspace inside a personal folder, are not asked about.
	o := sandbox.decision with input as launch({"read": ["/home/alice/Documentsx", "/data"]})
	o.allow
	o.obligations == []
}

test_a_remembered_personal_folder_is_not_asked_again if {
	d := sandbox.decision with input as interactive({"read": ["/home/alice/Documents/taxes"]})
		with data.cordon.remembered.sandbox as {"read:/home/alice/Documents/taxes": {"by": "terminal"}}
	d.allow
	d.obligations == []

	# Reading remembered never stands for writing.
	w := sandbox.decision with input as interactive({"write": ["/home/alice/Documents/taxes"]})
		with data.cordon.remembered.sandbox as {"read:/home/alice/Documents/taxes": {"by": "terminal"}}
	w.obligations[0].key == "sandbox:write:/home/alice/Documents/taxes"
	not sandbox.decision.allow with input as launch({"write": ["/home/alice/Documents/taxes"]})
		with data.cordon.remembered.sandbox as {"read:/home/alice/Documents/taxes": {"by": "terminal"}}

	# Writing remembered covers reading.
	r := sandbox.decision with input as interactive({"read": ["/home/alice/Documents/taxes"]})
		with data.cordon.remembered.sandbox as {"write:/home/alice/Documents/taxes": {"by": "terminal"}}
	r.obligations == []
}

at_workspace(ws) := object.union(launch({}), {"context": {"workspace": [ws]}})

test_a_workspace_in_a_protected_or_secrets_location_is_refused if {
	a := sandbox.decision with input as at_workspace("/home/alice/.config/autostart")
	not a.allow
	contains(a.reasons[0], "is protected")
	not sandbox.decision.allow with input as at_workspace("/home/alice/.config/git/hooks")
	not sandbox.decision.allow with input as at_workspace("/home/alice/.docker")
	not sandbox.decision.allow with input as at_workspace("/home/alice/.config")
	sandbox.decision.allow with input as at_workspace("/home/alice/src/project")

	# `$XDG_CONFIG_HOME` elsewhere holds the same protected places.
	elsewhere := object.union(launch({"write": ["/xdg/autostart/sub"]}), {"context": {"config_home": "/xdg"}})
	not sandbox.decision.allow with input as elsewhere
}

test_personal_folders_the_desktop_names_are_asked_about_too if {
	named := object.union(
		interactive({"read": ["/home/alice/Dokumente/steuer"]}),
		{"context": {"personal_dirs": ["/home/alice/Dokumente", "/data/photos"]}},
	)
	d := sandbox.decision with input as named
	d.obligations[0].key == "sandbox:read:/home/alice/Dokumente/steuer"
	d.obligations[0].message == "Let `bash` see your personal folder `/home/alice/Dokumente/steuer`?"

	# A folder elsewhere (where ~/Pictures leads), and a directory holding it.
	elsewhere := object.union(
		launch({"read": ["/data"]}),
		{"context": {"personal_dirs": ["/data/photos"]}},
	)
	not sandbox.decision.allow with input as elsewhere
}

skill_launch(request) := {
	"capability": "sandbox",
	"action": "launch",
	"subject": {"skill": {"name": "summarise", "sha256": "ab12"}},
	"resource": {"skill": "/home/alice/skills/summarise.wasm"},
	"context": {
		"home": "/home/alice",
		"workspace": [],
		"env": ["PATH", "HOME", "GITHUB_TOKEN", "LANG"],
		"request": request,
	},
}

test_a_skill_gets_what_it_asks_for_and_nothing_of_the_system if {
	d := sandbox.decision with input as skill_launch({"read": ["/home/alice/notes"], "write": ["/home/alice/proj/out"], "net": ["api.example.org"], "keep_env": ["LANG"]})
	d.allow
	d.grants.read == ["/home/alice/notes"]
	d.grants.write == ["/home/alice/proj/out"]
	d.grants.net == ["api.example.org"]
	d.grants.env == ["LANG"]
	d.grants.limits.cpu_ms == 10000
	not d.grants.mask
	contains(d.reasons[0], "skill `summarise`")
}

test_a_skill_with_nothing_asked_gets_nothing if {
	d := sandbox.decision with input as skill_launch({})
	d.allow
	d.grants.read == []
	d.grants.write == []
	d.grants.env == []
}

test_a_skill_is_refused_a_secret_or_the_home_to_write if {
	d := sandbox.decision with input as skill_launch({"read": ["/home/alice/.ssh"]})
	not d.allow
	d2 := sandbox.decision with input as skill_launch({"write": ["/home/alice"]})
	not d2.allow
	contains(concat(" ", d2.reasons), "your home directory")
}

test_a_skill_without_a_digest_is_refused if {
	d := sandbox.decision with input as json.patch(skill_launch({}), [{"op": "remove", "path": "/subject/skill/sha256"}])
	not d.allow
}

test_an_unsigned_skill_is_refused_where_signatures_are_required if {
	d := sandbox.decision with input as skill_launch({}) with data.cordon.settings.skills.require_signed as true
	not d.allow
	contains(d.reasons[0], "not signed by a trusted key")
	signed := json.patch(skill_launch({}), [{"op": "add", "path": "/subject/skill/signed_by", "value": "release"}])
	d2 := sandbox.decision with input as signed with data.cordon.settings.skills.require_signed as true
	d2.allow
}

test_a_skill_whose_signature_does_not_hold_is_refused if {
	bad := json.patch(skill_launch({}), [{"op": "add", "path": "/resource/signature_error", "value": "the skill was changed after it was signed"}])
	d := sandbox.decision with input as bad
	not d.allow
	contains(d.reasons[0], "changed after it was signed")
}

test_a_skill_asking_for_a_personal_folder_is_asked_about_by_name if {
	ask := json.patch(skill_launch({"read": ["/home/alice/Documents"]}), [
		{"op": "add", "path": "/context/personal_dirs", "value": ["/home/alice/Documents"]},
		{"op": "add", "path": "/context/consent", "value": {"interactive": true}},
	])
	d := sandbox.decision with input as ask
	d.allow
	d.obligations[0].type == "consent"
	contains(d.obligations[0].message, "skill `summarise`")
}
