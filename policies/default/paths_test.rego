package cordon.lib.paths_test

import data.cordon.lib.paths
import rego.v1

test_within_root_and_below if {
	paths.within("/a/b", "/a/b")
	paths.within("/a/b/c", "/a/b")
	paths.within("/a/b/c", "/a/b/")
	paths.within("/etc", "/")
}

test_not_within_sibling_prefix if {
	not paths.within("/a/bc", "/a/b")
	not paths.within("/a", "/a/b")
}

test_is_secret_home_and_system if {
	paths.is_secret("/home/bob/.kube/config", "/home/bob")
	paths.is_secret("/etc/gshadow", "/home/bob")
	paths.is_secret("/etc/ssh/ssh_host_rsa_key.pub", "/home/bob")
	not paths.is_secret("/home/bob/.sshrc", "/home/bob")
	not paths.is_secret("/home/bob/code/.ssh-notes", "/home/bob")
}
