package cordon.net_test

import data.cordon.net
import rego.v1

req(host, port) := {
	"capability": "net",
	"action": "connect",
	"resource": {"host": host, "port": port, "sensitivity": "internal", "sensitivity_level": 1},
}

test_allowlisted_host_allowed_with_upload_budget if {
	d := net.decision with input as req("api.github.com", 443)
	d.allow
	d.reasons == ["`api.github.com` matches allowlist entry `api.github.com`"]
	d.obligations == [{"type": "limit", "bytes": 33554432, "per_minute": 600}]
}

test_wildcard_entry_matches_subdomain if {
	net.decision.allow with input as req("raw.githubusercontent.com", 443)
}

test_wildcard_entry_does_not_match_lookalike if {
	not net.decision.allow with input as req("evilgithubusercontent.com", 443)
	not net.decision.allow with input as req("githubusercontent.com", 443)
	net.decision.allow with input as req("a.b.githubusercontent.com", 443)
}

test_wrong_port_denied if {
	d := net.decision with input as req("api.github.com", 22)
	not d.allow
	d.reasons == ["`api.github.com:22` is not on the egress allowlist"]
}

test_entry_without_ports_allows_any_port if {
	net.decision.allow with input as req("example.org", 8443) with data.cordon.settings.net.allow as {"example.org": {}}
}

test_unlisted_host_denied if {
	not net.decision.allow with input as req("paste.example", 443)
}

test_metadata_denied_even_if_allowlisted if {
	d := net.decision with input as req("169.254.169.254", 80) with data.cordon.settings.net.allow as {"169.254.169.254": {}}
	not d.allow
	"`169.254.169.254` is a cloud metadata address and is never reachable" in d.reasons
}

test_nested_subdomain_entries_do_not_conflict if {
	d := net.decision with input as req("a.b.example.org", 443)
		with data.cordon.settings.net.allow_subdomains as {"example.org": {}, "b.example.org": {}}
	d.allow
	d.reasons == ["`a.b.example.org` matches allowlist entry `*.b.example.org`"]
}

test_subdomain_entry_applies_its_ports if {
	not net.decision.allow with input as req("raw.githubusercontent.com", 80)
}

test_link_local_denied if {
	d := net.decision with input as req("169.254.10.1", 80) with data.cordon.settings.net.allow as {"169.254.10.1": {}}
	not d.allow
	d.reasons == ["`169.254.10.1` is link-local (169.254.0.0/16) and is never reachable"]
}

test_restricted_payload_denied if {
	r := req("api.github.com", 443)
	d := net.decision with input as object.union(r, {"resource": {"sensitivity": "restricted", "sensitivity_level": 3}})
	not d.allow
	d.reasons == ["restricted data never leaves the device"]
}

test_confidential_payload_to_allowlist_allowed if {
	r := req("api.github.com", 443)
	net.decision.allow with input as object.union(r, {"resource": {"sensitivity": "confidential", "sensitivity_level": 2}})
}

test_missing_host_denied if {
	d := net.decision with input as {"action": "connect", "resource": {"port": 443, "sensitivity_level": 1}}
	not d.allow
	"network request has no `resource.host`" in d.reasons
}

proxied(host, port, addresses, request) := {
	"capability": "net",
	"action": "connect",
	"resource": {
		"host": host, "port": port, "sensitivity": "internal", "sensitivity_level": 1,
		"host_is_ip": regex.match(`^[0-9.:]+$`, host),
		"addresses": addresses,
	},
	"context": {"request": {"net": request}},
}

public := [{"ip": "140.82.112.5", "class": "public"}]

loopback := [{"ip": "127.0.0.1", "class": "loopback"}]

test_person_can_allow_a_host_by_name if {
	d := net.decision with input as proxied("example.org", 443, public, ["example.org"])
	d.allow
	d.reasons == ["`example.org` matches allowlist entry `example.org`"]
	net.decision.allow with input as proxied("example.org", 8443, public, ["example.org:8443"])
	not net.decision.allow with input as proxied("example.org", 8443, public, ["example.org:443"])
}

test_internal_address_only_when_named_with_its_port if {
	net.decision.allow with input as proxied("127.0.0.1", 8080, loopback, ["127.0.0.1:8080"])
	not net.decision.allow with input as proxied("127.0.0.1", 8080, loopback, ["127.0.0.1"])
	not net.decision.allow with input as proxied("127.0.0.1", 9090, loopback, ["127.0.0.1:8080"])
}

test_name_resolving_inside_is_refused_even_when_allowed if {
	d := net.decision with input as proxied("api.github.com", 443, loopback, [])
	not d.allow
	d.reasons == ["`api.github.com` resolves to 127.0.0.1, a loopback address: an internal address is reachable only when named explicitly with its port (--allow-net 127.0.0.1:443)"]
	not net.decision.allow with input as proxied("localhost", 8080, loopback, ["localhost:8080"])
}

test_metadata_never_even_when_named if {
	meta := [{"ip": "169.254.169.254", "class": "metadata"}]
	d := net.decision with input as proxied("169.254.169.254", 80, meta, ["169.254.169.254:80"])
	not d.allow
	not net.decision.allow with input as proxied("rebind.example", 80, meta, ["rebind.example"])
}

test_exfiltration_shaped_names_are_refused if {
	long := object.union(proxied("x.example", 443, public, ["x.example"]), {"resource": {"exfil": {"longest_label": 50, "entropy": 3.0, "unique_subdomains": 1}}})
	not net.decision.allow with input as long
	random := object.union(proxied("x.example", 443, public, ["x.example"]), {"resource": {"exfil": {"longest_label": 32, "entropy": 4.6, "unique_subdomains": 1}}})
	not net.decision.allow with input as random
	many := object.union(proxied("x.example", 443, public, ["x.example"]), {"resource": {"exfil": {"longest_label": 5, "entropy": 2.0, "unique_subdomains": 31}}})
	not net.decision.allow with input as many
	plain := object.union(proxied("x.example", 443, public, ["x.example"]), {"resource": {"exfil": {"longest_label": 7, "entropy": 2.5, "unique_subdomains": 2}}})
	net.decision.allow with input as plain
}

test_ipv6_host_and_port_stay_apart if {
	v6 := {"capability": "net", "action": "connect", "resource": {"host": "::1", "port": 8098, "host_is_ip": true, "addresses": [{"ip": "::1", "class": "loopback"}]}}
	# `::1:8098` names an address (any port), not port 8098 of ::1.
	not net.decision.allow with input as object.union(v6, {"context": {"request": {"net": ["::1:8098"]}}})
	net.decision.allow with input as object.union(v6, {"context": {"request": {"net": ["[::1]:8098"]}}})
	d := net.decision with input as v6
	d.reasons == ["`::1` resolves to ::1, a loopback address: an internal address is reachable only when named explicitly with its port (--allow-net [::1]:8098)"]
}

ask(host, port) := object.union(req(host, port), {"context": {"consent": {"interactive": true, "backends": ["socket"]}}})

test_unlisted_host_asks_the_person_when_one_can_be_asked if {
	d := net.decision with input as ask("paste.example", 443)
	d.allow
	d.reasons == ["`paste.example:443` is not on the egress allowlist; the person is asked"]
	d.obligations[0].type == "consent"
	d.obligations[0].timeout_s == 60
	d.obligations[1] == {"type": "limit", "bytes": 33554432, "per_minute": 600}
}

test_no_one_to_ask_is_a_denial if {
	d := net.decision with input as object.union(req("paste.example", 443), {"context": {"consent": {"interactive": false}}})
	not d.allow
	d.obligations == []
}

test_asking_never_reaches_what_is_denied_or_internal if {
	# Metadata, link-local and restricted data stay denied without a question.
	not net.decision.allow with input as ask("169.254.169.254", 80)
	not net.decision.allow with input as object.union(ask("paste.example", 443), {"resource": {"sensitivity_level": 3}})

	# An internal address is not asked about: it must be named with its port.
	d := net.decision with input as object.union(ask("db.corp", 5432), {"resource": {"addresses": [{"ip": "10.0.0.5", "class": "private"}]}})
	not d.allow
}

test_a_remembered_answer_allows_without_asking if {
	d := net.decision with input as req("paste.example", 443)
		with data.cordon.remembered as {"net": {"paste.example:443": {"by": "terminal"}}}
	d.allow
	d.obligations == [{"type": "limit", "bytes": 33554432, "per_minute": 600}]

	# Only that host and port.
	not net.decision.allow with input as req("paste.example", 80)
		with data.cordon.remembered as {"net": {"paste.example:443": {"by": "terminal"}}}
}
