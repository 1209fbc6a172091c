package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// Label and name syntax is Kubernetes', so a selector copied from a
// manifest means the same here, and so names written to the audit log and
// to metrics cannot carry spaces, quotes or control characters.
var (
	labelNameRE   = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	dnsLabelRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomanRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// ParseLabels reads host labels written "k=v,k2=v2", as given to --labels.
// Keys and values follow Kubernetes label syntax; a value may be empty
// ("k="). The empty string means no labels and yields a nil map. Anything
// else malformed, including spaces, an empty element or a repeated key, is
// an error: a host's labels decide which policies apply to it, so a typo
// must not silently select fewer policies.
func ParseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	labels := make(map[string]string)
	for i, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case kv == "":
			return nil, fmt.Errorf("label %d is empty; "+
				"write labels as key=value separated by single commas", i+1)
		case !ok:
			return nil, fmt.Errorf("label %q has no '='; write it as key=value", kv)
		}
		if err := checkLabelKey(k); err != nil {
			return nil, fmt.Errorf("label %q: %w", kv, err)
		}
		if err := checkLabelValue(v); err != nil {
			return nil, fmt.Errorf("label %q: %w", kv, err)
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("label key %q is given twice; give each key once", k)
		}
		labels[k] = v
	}
	return labels, nil
}

// checkLabelKey checks a Kubernetes qualified name: [prefix/]name.
func checkLabelKey(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix {
		if prefix == "" || len(prefix) > 253 || !dnsSubdomanRE.MatchString(prefix) {
			return fmt.Errorf("key prefix %q is not a DNS subdomain; "+
				"use lowercase letters, digits, '-' and '.', at most 253 characters", prefix)
		}
	}
	if name == "" || len(name) > 63 || !labelNameRE.MatchString(name) {
		return fmt.Errorf("key %q is not a valid label key; "+
			"use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, after an optional DNS prefix and '/'", k)
	}
	return nil
}

func checkLabelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 63 || !labelNameRE.MatchString(v) {
		return fmt.Errorf("value %q is not a valid label value; "+
			"use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
	}
	return nil
}

func checkName(name string) error {
	if len(name) > 253 || !dnsSubdomanRE.MatchString(name) {
		return fmt.Errorf("name %q is not a DNS subdomain; "+
			"use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", name)
	}
	return nil
}

func checkNamespace(ns string) error {
	if len(ns) > 63 || !dnsLabelRE.MatchString(ns) {
		return fmt.Errorf("namespace %q is not a DNS label; "+
			"use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", ns)
	}
	return nil
}
