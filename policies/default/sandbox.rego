# What a native agent launched with `cordon exec` may see, and what directories, hosts and
# variables a WebAssembly skill run with `cordon run` gets: decided once, at launch.
#
# The person's flags (--allow-read, --allow-write, --allow-net, --keep-env; for a skill --dir,
# --dir-ro) arrive as `input.context.request`; this package turns them, the workspace and the
# settings in data.cordon.settings.sandbox into the grant set the sandbox enforces. Secrets
# locations are never granted, whatever is asked, and are masked inside every granted tree.
# A skill (`input.subject.skill`: name, sha256) gets only what it asked for, each directory
# checked as a native grant is, and its limits; each file it opens and each request it makes
# is decided again when it happens (data.cordon.file, data.cordon.net).
package cordon.sandbox

import rego.v1

default decision := {
	"allow": false,
	"reasons": ["no rule allows this launch; denying by default"],
	"obligations": [],
}

decision := {"allow": false, "reasons": [r | some r in deny], "obligations": []} if {
	count(deny) > 0
} else := {
	"allow": false,
	"reasons": [sprintf("`%s` is or holds a personal folder: granting it needs the person's answer, and no one can be asked here (run in a terminal, or with --consent socket and answer with `cordon approve`)", [ask.path]) | some ask in ask_grant],
	"obligations": [],
} if {
	count(ask_grant) > 0
	not object.get(object.get(input.context, "consent", {}), "interactive", false) == true
} else := {
	"allow": true,
	"reasons": [summary],
	"obligations": [{
		"type": "consent",
		"key": concat(":", ["sandbox", ask.mode, ask.path]),
		"message": ask_message(ask),
	} |
		some ask in ask_grant
	],
	"grants": grants,
}

summary := sprintf("skill `%s` (sha256 %s) may read %v and write %v", [
	input.subject.skill.name, input.subject.skill.sha256, read_requested, write,
]) if {
	input.subject.skill
} else := sprintf("`%s` may read the system directories and %d granted paths, and write %v", [
	input.resource.command[0], count(read_requested), write,
])

grants := {
	"read": read_requested,
	"write": write,
	"net": [n | some n in requested.net],
	"env": sort([n | some n in requested.keep_env]),
	"limits": settings.skill_limits,
} if {
	input.subject.skill
} else := object.union(tcp, {
	"read": array.concat(array.concat(settings.system_read, toolchains), read_requested),
	"write": write,
	"mask": mask,
	"protect": protect,
	"env": env,
	"net": [n | some n in requested.net],
	"limits": {"pids": settings.limits.pids, "memory_bytes": memory_bytes},
	"require": settings.require,
	"landlock_abi": object.get(settings, "landlock_abi", 1),
})

# TCP ports (settings.sandbox.tcp: {"bind": [...], "connect": [...]}) are confined with
# Landlock only when the settings name them: the network namespace already has no route
# out, and programs inside run their own loopback services on ports nobody can predict.
tcp := {"tcp": settings.tcp} if {
	settings.tcp
} else := {}

settings := data.cordon.settings.sandbox

# The memory cap: `limits.memory_bytes` when the settings name one, else a share of this
# machine's memory (`context.machine.memory_bytes`), at most `limits.memory_max_bytes`.
memory_bytes := settings.limits.memory_bytes if {
	settings.limits.memory_bytes
} else := min([
	floor(input.context.machine.memory_bytes * settings.limits.memory_fraction),
	settings.limits.memory_max_bytes,
]) if {
	input.context.machine.memory_bytes > 0
} else := settings.limits.memory_max_bytes

home := input.context.home

requested := object.union({"read": [], "write": [], "net": [], "keep_env": [], "broad_write": false}, object.get(input.context, "request", {}))

deny contains "sandbox request has no `context.home`, so secrets locations cannot be ruled out" if not input.context.home

deny contains "sandbox request has no `resource.command`" if {
	not input.subject.skill
	count(object.get(input.resource, "command", [])) == 0
}

deny contains "a skill launch names no `subject.skill.sha256`" if {
	input.subject.skill
	not input.subject.skill.sha256
}

# Skills signed by a key in data.cordon.settings.skills.trusted_keys carry the key's name
# (`subject.skill.signed_by`); with `require_signed`, no other skill runs.
deny contains msg if {
	input.subject.skill
	data.cordon.settings.skills.require_signed
	not input.subject.skill.signed_by
	msg := sprintf("skill `%s` is not signed by a trusted key, and the policy runs only signed skills (sign it with `cordon skill sign`)", [input.subject.skill.name])
}

deny contains msg if {
	input.subject.skill
	msg := sprintf("skill `%s`: %s", [input.subject.skill.name, input.resource.signature_error])
}

deny contains msg if {
	some path in array.concat(array.concat(requested.read, requested.write), input.context.workspace)
	secret(path)
	msg := sprintf("`%s` is a credentials or secrets location: agents may never be granted it", [path])
}

# A workspace or write grant at or inside a protected location (`~/.config/autostart`,
# `~/.config/git`, agent configuration): inside it, everything is what the protection is for.
deny contains msg if {
	some path in array.concat(requested.write, input.context.workspace)
	some protected_dir in protected_place
	startswith(concat("", [trim_suffix(path, "/"), "/"]), concat("", [protected_dir, "/"]))
	msg := sprintf("`%s` is protected (`%s`: what runs outside the sandbox later reads it); an agent may not write there", [path, protected_dir])
}

deny contains msg if {
	some path in requested.write
	system(path)
	msg := sprintf("`%s` is or holds a system directory: sandboxes may read it, never write it", [path])
}

# Sockets of the session and the system (the session bus, ssh and gpg agents, the display,
# terminal multiplexers, container engines) live in these directories: a read-only grant does
# not stop `connect`, and each is a way out. Refused, as is any ancestor of them unless the
# person passes --unsafe-broad-write (sockets found at launch are then masked, but one made
# later would be reachable).
deny contains msg if {
	some path in array.concat(requested.read, requested.write)
	socket_dir(path)
	msg := sprintf("`%s` holds the sockets of other programs (session bus, agents, display, container engines): a sandbox may not reach them", [path])
}

deny contains msg if {
	some path in array.concat(requested.read, requested.write)
	not socket_dir(path)
	holds_socket_dir(path)
	not requested.broad_write
	msg := sprintf("`%s` holds the sockets of other programs (session bus, agents, display, container engines): grant a directory below it, or pass --unsafe-broad-write", [path])
}

socket_dir(path) if strings.any_prefix_match(concat("", [path, "/"]), settings.socket_dirs)

holds_socket_dir(path) if {
	some dir in settings.socket_dirs
	startswith(dir, concat("", [trim_suffix(path, "/"), "/"]))
}

# A writable home (or an ancestor of it) lets the agent plant what runs outside later: shell
# start-up files, git and editor configuration, autostart entries, cordon's own configuration.
# Shared temporary and runtime directories hold other programs' sockets and files. Neither is
# a project: refused as a workspace or a write grant unless the person passes
# --unsafe-broad-write, which is recorded with the decision.
deny contains msg if {
	some path in input.context.workspace
	broad(path)
	not system(path)
	not requested.broad_write
	msg := sprintf("the workspace `%s` (the current directory) is %s: cordon exec makes the workspace writable, so start it from a project directory, or pass --unsafe-broad-write", [path, broad_name(path)])
}

deny contains msg if {
	some path in requested.write
	broad(path)
	not system(path)
	not requested.broad_write
	msg := sprintf("`%s` is %s: writing there would reach beyond a project; pass --unsafe-broad-write to grant it anyway", [path, broad_name(path)])
}

# A write grant holding a secret location (`~/.config` holds `~/.config/gh`): a secret
# created there during the run would be readable, and the tree is wider than a project.
deny contains msg if {
	some path in array.concat(requested.write, input.context.workspace)
	not broad(path)
	some secret_dir in data.cordon.settings.secrets.home
	startswith(concat("/", [home, secret_dir]), concat("", [trim_suffix(path, "/"), "/"]))
	not requested.broad_write
	msg := sprintf("`%s` holds secret locations (%s): grant a directory below it, or pass --unsafe-broad-write", [path, concat("/", [home, trim_suffix(secret_dir, "/")])])
}

# cordon's own configuration, policy, state, cache and sessions are never writable: an agent
# that could write them would set the next run's policy, or answer for a session. A write
# grant (or the workspace) at or below one of them is refused whatever is asked; one above
# them keeps them read-only (`protect`).
deny contains msg if {
	some path in array.concat(requested.write, input.context.workspace)
	some own in object.get(input.context, "cordon_paths", [])
	startswith(concat("", [trim_suffix(path, "/"), "/"]), concat("", [trim_suffix(own, "/"), "/"]))
	msg := sprintf("`%s` is cordon's own (`%s`: its policy, configuration, state or sessions); an agent may not write there", [path, own])
}

broad(path) if broad_name(path)

broad_name(path) := "your home directory" if path == home

else := "an ancestor of your home directory" if startswith(concat("", [home, "/"]), concat("", [trim_suffix(path, "/"), "/"]))

else := "a shared temporary, runtime or system directory" if path in settings.dangerous_write

else := "below a system directory whose files root's services run (cron, package state, boot), and cordon runs as root" if {
	object.get(input.context, "as_root", false)
	some dir in settings.dangerous_below_as_root
	startswith(concat("", [path, "/"]), concat("", [dir, "/"]))
}

else := "a user's runtime directory (sockets of the desktop session)" if startswith(concat("", [path, "/"]), "/run/user/")

read_requested := [p | some p in requested.read]

# Tool chains installed under the home directory (rustup, pyenv, nvm) stay usable, read-only.
# Grants that do not exist on this machine are skipped by the sandbox.
toolchains := [concat("/", [home, p]) | some p in settings.home_read]

# The workspace roots are writable unless they are, or hold, a system directory (`cordon exec`
# started from `/` gets no writable workspace).
write := sort({p | some p in input.context.workspace; not system(p)} | {p | some p in requested.write})

secret(path) if {
	startswith(path, concat("", [home, "/"]))
	strings.any_prefix_match(concat("", [substring(path, count(home) + 1, -1), "/"]), data.cordon.settings.secrets.home)
}

secret(path) if strings.any_prefix_match(concat("", [path, "/"]), data.cordon.settings.secrets.system)

system(path) if path == "/"

system(path) if {
	some dir in settings.system_read
	startswith(concat("", [path, "/"]), concat("", [dir, "/"]))
}

system(path) if {
	some dir in settings.system_read
	startswith(dir, concat("", [path, "/"]))
}

# Entries ending in `/` are exact paths; others are name prefixes (`/etc/ssh/ssh_host_`).
mask := array.concat(
	[concat("/", [home, s]) | some s in data.cordon.settings.secrets.home],
	data.cordon.settings.secrets.system,
)

# Files whose change would act on the next run (shell start-up, git hooks, agent and editor
# configuration) stay read-only inside every writable tree and the home directory, and so do
# cordon's own configuration, policy and state.
protect := sort(
	({concat("/", [trim_suffix(root, "/"), name]) | some root in array.concat(write, [home]); some name in settings.protected} |
	{p | some p in object.get(input.context, "cordon_paths", [])}) |
	config_home_protected,
)

# Where the protected names are: under the home, and under `$XDG_CONFIG_HOME` wherever it is.
protected_place := {concat("/", [home, name]) | some name in settings.protected} | config_home_protected

# `$XDG_CONFIG_HOME` elsewhere than ~/.config holds the same configuration.
config_home_protected contains concat("/", [input.context.config_home, substring(name, 8, -1)]) if {
	input.context.config_home
	input.context.config_home != concat("/", [home, ".config"])
	some name in settings.protected
	startswith(name, ".config/")
}

env := sort({n | some n in input.context.env; data.cordon.env.passed(n)} | {n | some n in requested.keep_env})

# Personal folders (settings.ask_grant, under the home): a grant of one, of anything in one,
# or of a directory that holds one (the home itself), is made only once the person says so,
# for reading or for writing. An answer for always is remembered per mode and path
# (`data.cordon.remembered.sandbox["read:PATH"]`, `["write:PATH"]`; writing covers reading)
# and not asked again.
ask_grant contains {"mode": mode, "path": path} if {
	some path in array.concat(requested.read, requested.write)
	mode := grant_mode(path)
	personal(path)
	not remembered_grant(mode, path)
}

grant_mode(path) := "write" if path in requested.write

grant_mode(path) := "read" if not path in requested.write

personal(path) if in_personal(path)

personal(path) if {
	some place in personal_places
	startswith(place, concat("", [trim_suffix(path, "/"), "/"]))
}

# The personal folders: `settings.ask_grant` under the home, and those cordon found
# (`context.personal_dirs`: the desktop's own names for them, links resolved).
personal_places := {concat("/", [home, folder]) | some folder in object.get(settings, "ask_grant", [])} | {concat("", [trim_suffix(dir, "/"), "/"]) | some dir in object.get(input.context, "personal_dirs", [])}

remembered_grant(mode, path) if data.cordon.remembered.sandbox[concat(":", [mode, path])]

remembered_grant("read", path) if data.cordon.remembered.sandbox[concat(":", ["write", path])]

# Who asks, as the question names it: a skill by its name and digest, a program by its name.
who := sprintf("skill `%s` (sha256 %s)", [input.subject.skill.name, substring(input.subject.skill.sha256, 0, 12)]) if {
	input.subject.skill
} else := sprintf("`%s`", [input.resource.command[0]])

# The question: about a personal folder (or something in one), or about a directory that
# holds them. (Written as separate rules, without `else`, for the bytecode VM.)
ask_message(ask) := sprintf("Let %s change your personal folder `%s`?", [who, ask.path]) if {
	ask.mode == "write"
	in_personal(ask.path)
}

ask_message(ask) := sprintf("Let %s see your personal folder `%s`?", [who, ask.path]) if {
	ask.mode == "read"
	in_personal(ask.path)
}

ask_message(ask) := sprintf("Let %s %s `%s`, which holds your personal folders?", [who, verb, ask.path]) if {
	not in_personal(ask.path)
	verb := {"read": "see", "write": "change"}[ask.mode]
}

in_personal(path) if {
	some place in personal_places
	startswith(concat("", [trim_suffix(path, "/"), "/"]), place)
}
