# Path helpers shared by the packages of the default policy.
package cordon.lib.paths

import rego.v1

# within(p, root) holds when p is root or lies below it. Paths in the input are absolute and
# already normalised by cordon (no `.`, `..` or `~`), so a prefix test on whole components is
# exact.
within(p, root) if p == root

within(p, root) if startswith(p, concat("", [trim_suffix(root, "/"), "/"]))

# The credentials and secrets locations for the person whose home is `home`.
secret_locations(home) := {loc |
	some rel in data.cordon.settings.secrets.home
	loc := concat("/", [home, rel])
} | {loc | some loc in data.cordon.settings.secrets.system}

# is_secret(p, home) holds when p is, or lies below, a secrets location.
is_secret(p, home) if {
	some loc in secret_locations(home)
	within(p, loc)
}

is_secret(p, _) if {
	some prefix in data.cordon.settings.secrets.system_prefixes
	startswith(p, prefix)
}
