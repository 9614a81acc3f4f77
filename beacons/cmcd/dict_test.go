package cmcd

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDictValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []member
	}{
		{"integer", "br=3200", []member{{key: "br", val: value{item: item{kind: kindInt, i: 3200}}}}},
		{"negative integer", "x=-5", []member{{key: "x", val: value{item: item{kind: kindInt, i: -5}}}}},
		{"decimal", "pr=1.25", []member{{key: "pr", val: value{item: item{kind: kindDec, f: 1.25}}}}},
		{"string with escapes", `cid="a\"b\\c"`, []member{{key: "cid", val: value{item: item{kind: kindString, s: `a"b\c`}}}}},
		{"empty string", `cid=""`, []member{{key: "cid", val: value{item: item{kind: kindString}}}}},
		{"token", "ot=av", []member{{key: "ot", val: value{item: item{kind: kindToken, s: "av"}}}}},
		{"token with colon and slash", "x=a:b/c", []member{{key: "x", val: value{item: item{kind: kindToken, s: "a:b/c"}}}}},
		{"byte sequence kept raw", "x=:aGVsbG8=:", []member{{key: "x", val: value{item: item{kind: kindBytes, s: "aGVsbG8="}}}}},
		{"empty byte sequence", "x=::", []member{{key: "x", val: value{item: item{kind: kindBytes}}}}},
		{"bare key is true", "bs", []member{{key: "bs", val: value{item: item{kind: kindBool, i: 1}}}}},
		{"explicit false", "bs=?0", []member{{key: "bs", val: value{item: item{kind: kindBool}}}}},
		{"explicit true", "bs=?1", []member{{key: "bs", val: value{item: item{kind: kindBool, i: 1}}}}},
		{"star key", "*x=1", []member{{key: "*x", val: value{item: item{kind: kindInt, i: 1}}}}},
		{"custom key", "com.example-hello=1", []member{{key: "com.example-hello", val: value{item: item{kind: kindInt, i: 1}}}}},
		{"parameters ignored, tag kept", "br=3000;v;x=2", []member{{key: "br", val: value{item: item{kind: kindInt, i: 3000, tag: "v"}}}}},
		{"parameter on bare key", "bs;a=1", []member{{key: "bs", val: value{item: item{kind: kindBool, i: 1}}}}},
		{"false parameter is not a tag", "br=1;a=?0;v", []member{{key: "br", val: value{item: item{kind: kindInt, i: 1, tag: "v"}}}}},
		{"inner list", "br=(1000 2000)", []member{{key: "br", val: value{item: item{kind: kindList}, list: []item{{kind: kindInt, i: 1000}, {kind: kindInt, i: 2000}}}}}},
		{"inner list with tags", "br=(3000;v 164;a)", []member{{key: "br", val: value{item: item{kind: kindList}, list: []item{{kind: kindInt, i: 3000, tag: "v"}, {kind: kindInt, i: 164, tag: "a"}}}}}},
		{"inner list padded", "nor=( \"a\"  \"b\" )", []member{{key: "nor", val: value{item: item{kind: kindList}, list: []item{{kind: kindString, s: "a"}, {kind: kindString, s: "b"}}}}}},
		{"empty inner list", "x=()", []member{{key: "x", val: value{item: item{kind: kindList}}}}},
		{"inner list parameters", "x=(1);p=2", []member{{key: "x", val: value{item: item{kind: kindList}, list: []item{{kind: kindInt, i: 1}}}}}},
		{"ows around commas", "a=1 ,\tb=2 ,  c", []member{
			{key: "a", val: value{item: item{kind: kindInt, i: 1}}},
			{key: "b", val: value{item: item{kind: kindInt, i: 2}}},
			{key: "c", val: value{item: item{kind: kindBool, i: 1}}},
		}},
		{"surrounding whitespace", "  a=1  ", []member{{key: "a", val: value{item: item{kind: kindInt, i: 1}}}}},
		{"15-digit integer", "ts=999999999999999", []member{{key: "ts", val: value{item: item{kind: kindInt, i: 999999999999999}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDict(tt.in)
			if err != nil {
				t.Fatalf("parseDict(%q): %v", tt.in, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parseDict(%q) = %d members, want %d", tt.in, len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.key != w.key || g.val.item != w.val.item || !equalItems(g.val.list, w.val.list) {
					t.Errorf("member %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func equalItems(a, b []item) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseDictInvalid(t *testing.T) {
	tests := []struct {
		name, in, key, reason string
	}{
		{"empty", "", "", "empty dictionary"},
		{"blank", "   ", "", "empty dictionary"},
		{"too long", "a=" + strings.Repeat("1", MaxLineBytes), "", "longer than"},
		{"uppercase key", "BR=1", "BR", "key must start"},
		{"digit key", "1a=1", "1a", "key must start"},
		{"leading comma", ",a=1", "(',')", "key must start"},
		{"trailing comma", "a=1,", "a", "trailing comma"},
		{"double comma", "a=1,,b=2", "(',')", "key must start"},
		{"missing value", "br=", "br", "missing value"},
		{"space before equals", "br =1", "br", "after value"},
		{"space after equals", "br= 1", "br", "at start of value"},
		{"duplicate", "br=1,br=2", "br", "duplicate key"},
		{"integer too long", "ts=1234567890123456", "ts", "15 digits"},
		{"decimal int part too long", "pr=1234567890123.1", "pr", "12 integer digits"},
		{"decimal without fraction", "pr=1.", "pr", "fraction digits"},
		{"decimal four fraction digits", "pr=1.2345", "pr", "fraction digits"},
		{"lone minus", "d=-", "d", "without digits"},
		{"unterminated string", `cid="abc`, "cid", "unterminated string"},
		{"bad escape", `cid="a\n"`, "cid", "bad escape"},
		{"escape at end", `cid="a\`, "cid", "unterminated string"},
		{"control byte in string", "cid=\"a\x01\"", "cid", "non-printable"},
		{"utf8 in string", "cid=\"caf\xc3\xa9\"", "cid", "non-printable"},
		{"unterminated byte sequence", "x=:abc", "x", "bad byte sequence"},
		{"bad base64 char", "x=:ab*c:", "x", "bad byte sequence"},
		{"bad boolean", "bs=?2", "bs", "?0 or ?1"},
		{"unterminated inner list", "br=(1 2", "br", "unterminated inner list"},
		{"inner list no separator", `nor=("a""b")`, "nor", "in inner list"},
		{"nested inner list", "br=((1))", "br", "at start of value"},
		{"garbage after value", "br=1x", "br", "after value"},
		{"semicolon without key", "br=1;", "br", "bad parameter key"},
		{"bad parameter value", "br=1;a=", "br", "missing value"},
		{"too many parameters", "br=1;a;b;c;d;e;f;g;h;i", "br", "parameters"},
		{"inner list too long", "br=(" + strings.Repeat("1 ", maxInnerList+1) + ")", "br", "inner list longer"},
		{"key too long", strings.Repeat("a", maxKeyBytes+1) + "=1", strings.Repeat("a", maxErrKeyBytes), "key longer"},
		{"newline inside", "a=1\nb=2", "a", "after value"},
		{"tab before equals", "a\t=1", "a", "after value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDict(tt.in)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("parseDict(%q) error = %v, want *Error", tt.in, err)
			}
			if e.Key != tt.key {
				t.Errorf("Key = %q, want %q (reason %q)", e.Key, tt.key, e.Reason)
			}
			if !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", e.Reason, tt.reason)
			}
		})
	}
}

func TestParseDictMemberLimit(t *testing.T) {
	var b strings.Builder
	for i := range MaxMembers {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("k")
		b.WriteString(strings.Repeat("a", i/26))
		b.WriteByte(byte('a' + i%26))
	}
	if _, err := parseDict(b.String()); err != nil {
		t.Fatalf("%d members: %v", MaxMembers, err)
	}
	b.WriteString(",zz")
	_, err := parseDict(b.String())
	var e *Error
	if !errors.As(err, &e) || e.Key != "zz" || !strings.Contains(e.Reason, "members") {
		t.Fatalf("%d members: error = %v, want member limit naming zz", MaxMembers+1, err)
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Key: "br", Reason: "wrong type: got string, want integer"}, `cmcd key "br": wrong type: got string, want integer`},
		{&Error{Reason: "empty dictionary"}, "cmcd: empty dictionary"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
