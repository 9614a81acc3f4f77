package manifest

import (
	"errors"
	"fmt"
	"strings"
)

// attr is one attribute of an HLS attribute-list, its value as written
// (quoted strings keep their quotes), so unchanged attributes are written
// back byte for byte.
type attr struct {
	name, value string
}

// parseAttrs parses an HLS attribute-list (RFC 8216 §4.2).
func parseAttrs(s string) ([]attr, error) {
	var attrs []attr
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("attribute %q has no value", s)
		}
		name := s[:eq]
		for _, c := range name {
			if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return nil, fmt.Errorf("attribute name %q is not [A-Z0-9-]", name)
			}
		}
		s = s[eq+1:]
		var v string
		if strings.HasPrefix(s, `"`) {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("attribute %s: unterminated quoted string", name)
			}
			v, s = s[:end+2], s[end+2:]
			if s != "" && s[0] != ',' {
				return nil, fmt.Errorf("attribute %s: text after the quoted string", name)
			}
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			v, s = s[:end], s[end:]
			if v == "" {
				return nil, fmt.Errorf("attribute %s: empty value", name)
			}
			if strings.ContainsRune(v, '"') {
				return nil, fmt.Errorf("attribute %s: stray '\"' in %s", name, v)
			}
		}
		if _, dup := get(attrs, name); dup {
			return nil, fmt.Errorf("attribute %s is repeated", name)
		}
		attrs = append(attrs, attr{name, v})
		if s != "" {
			s = s[1:] // the comma
			if s == "" {
				return nil, errors.New("attribute list ends with a comma")
			}
		}
	}
	return attrs, nil
}

func formatAttrs(attrs []attr) string {
	var b strings.Builder
	for i, a := range attrs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.name)
		b.WriteByte('=')
		b.WriteString(a.value)
	}
	return b.String()
}

func get(attrs []attr, name string) (string, bool) {
	for _, a := range attrs {
		if a.name == name {
			return a.value, true
		}
	}
	return "", false
}

// set replaces the value of an attribute that is present.
func set(attrs []attr, name, value string) {
	for i := range attrs {
		if attrs[i].name == name {
			attrs[i].value = value
		}
	}
}

// unquote strips the quotes of a quoted-string value.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}
