package cmcd

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseScalarAndListForms(t *testing.T) {
	// v1 scalars and v2 single-element inner lists must decode the same.
	v1, err := Parse(`bl=5000,br=200,cid="c",d=325,dl=10000,mtp=10000,nor="..%2F3.m4v",ot=m,pr=1.5,rtp=8000,sf=d,sid="s",st=v,tb=5000`)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Parse(`bl=(5000),br=(200),cid=("c"),d=(325),dl=(10000),mtp=(10000),nor=("..%2F3.m4v"),ot=(m),pr=(1.5),rtp=(8000),sf=(d),sid=("s"),st=(v),tb=(5000)`)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v1, v2) {
		t.Errorf("v1 and v2 forms differ:\nv1 %+v\nv2 %+v", v1, v2)
	}
	if len(v1.BR) != 1 || v1.BR[0].Value != 200 || v1.NOR[0] != "..%2F3.m4v" || *v1.PR != 1.5 {
		t.Errorf("unexpected values: %+v", v1)
	}
}

func TestParseKnownKeyErrors(t *testing.T) {
	tests := []struct {
		in, key, reason string
	}{
		{`br="200"`, "br", "wrong type: got string"},
		{`br=(1 "x")`, "br", "wrong type"},
		{`br=1.5`, "br", "wrong type: got decimal"},
		{`bl=-100`, "bl", "negative"},
		{`d=1.5`, "d", "wrong type: got decimal"},
		{`d=(1 2)`, "d", "inner list of 2"},
		{`d=()`, "d", "inner list of 0"},
		{`sn=-1`, "sn", "negative"},
		{`ts=?1`, "ts", "wrong type: got boolean"},
		{`bs=1`, "bs", "wrong type: got integer"},
		{`su="yes"`, "su", "wrong type"},
		{`sid=abc`, "sid", "wrong type: got token"},
		{`sid="` + strings.Repeat("x", 65) + `"`, "sid", "longer than 64"},
		{`cid="` + strings.Repeat("x", 129) + `"`, "cid", "longer than 128"},
		{`cdn="` + strings.Repeat("x", 129) + `"`, "cdn", "longer than 128"},
		{`h="` + strings.Repeat("x", 129) + `"`, "h", "longer than 128"},
		{`cen="` + strings.Repeat("x", 65) + `"`, "cen", "longer than 64"},
		{`ot="v"`, "ot", "wrong type: got string"},
		{`sta=abcdefghi`, "sta", "token longer"},
		{`e=1`, "e", "wrong type"},
		{`pr="1"`, "pr", "wrong type"},
		{`pr=-1.0`, "pr", "negative"},
		{`nor=1`, "nor", "wrong type"},
		{`ec=(1.5)`, "ec", "wrong type"},
		{`ec=(` + strings.Repeat(`"e" `, maxListItems+1) + `)`, "ec", "entries"},
		{`br=(` + strings.Repeat(`1 `, maxListItems+1) + `)`, "br", "entries"},
		{`br=1;abcdefghij`, "br", "object type parameter"},
		{`com.example-x="` + strings.Repeat("x", 65) + `"`, "com.example-x", "custom value longer than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 20)], func(t *testing.T) {
			_, err := Parse(tt.in)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) error = %v, want *Error", tt.in, err)
			}
			if e.Key != tt.key || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("Parse(%q) = %v, want key %q reason containing %q", tt.in, err, tt.key, tt.reason)
			}
		})
	}
}

func TestParseCustomAndUnknownKeys(t *testing.T) {
	r, err := Parse(`com.example-hello="world",com.example-exists,com.example-off=?0,com.example-n=1234,com.example-tok=s,` +
		`com.example-list=(1;v "a"),com.example-bin=:AQI=:,cmsds="` + strings.Repeat("Q", 100) + `",zz=1.5,sid="s"`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"com.example-hello":  "world",
		"com.example-exists": "true",
		"com.example-off":    "false",
		"com.example-n":      "1234",
		"com.example-tok":    "s",
		"com.example-list":   `(1;v "a")`,
		"com.example-bin":    ":AQI=:",
		"cmsds":              strings.Repeat("Q", 64), // unknown spec key: truncated, not rejected
		"zz":                 "1.5",
	}
	if !reflect.DeepEqual(r.Custom, want) {
		t.Errorf("Custom = %v\nwant %v", r.Custom, want)
	}
}

func TestParseCustomCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(`sid="s"`)
	for i := range maxCustom + 5 {
		b.WriteString(",com.example-k")
		b.WriteString(strings.Repeat("a", i/26))
		b.WriteByte(byte('a' + i%26))
	}
	r, err := Parse(b.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Custom) != maxCustom || r.DroppedCustom != 5 {
		t.Errorf("kept %d custom keys, dropped %d; want %d and 5", len(r.Custom), r.DroppedCustom, maxCustom)
	}
}

func TestIsCustomKey(t *testing.T) {
	for key, want := range map[string]bool{
		"com.example-hello": true,
		"a.b-c":             true,
		"com-hello":         false, // no reverse-dns part
		"com.example-":      false,
		".x-y":              false,
		"cmsds":             false,
	} {
		if got := isCustomKey(key); got != want {
			t.Errorf("isCustomKey(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestParseZeroValuesArePresent(t *testing.T) {
	r, err := Parse(`bl=(0),pr=0,pt=0,rc=0,sid="s",sn=0`)
	if err != nil {
		t.Fatal(err)
	}
	if r.SN == nil || *r.SN != 0 || r.PT == nil || r.RC == nil || r.PR == nil || len(r.BL) != 1 {
		t.Errorf("zero values lost: %+v", r)
	}
}
