package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/internal/config"
)

const ctlToken = "ctl-test-admin-token-0123456789"

// TestCtl drives `cdnpilot ctl` against a real admin API: overrides add
// (dry run and for real), list, extend, rm, explain, rankings, cdns,
// audit and whoami, as tables and as JSON, and its errors.
func TestCtl(t *testing.T) {
	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr, cfg.Demo.Viewers = "127.0.0.1:0", "", 0
	cfg.Admin.Token = ctlToken
	cfg.Admin.Tokens = []config.AdminToken{{Name: "vic", SHA256: auth.HashToken("ctl-test-viewer-token-012345"), Role: "viewer"}}
	a, err := app.New(t.Context(), cfg, app.Roles{Consume: true, Score: true, Admin: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-a.Overrides().Ready()
	server := "http://" + a.HTTPAddr()
	ctl := func(token string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"ctl", "--server", server, "--token", token}, args...), &out, &errb)
		return out.String() + errb.String(), err
	}

	// The scorer publishes its first snapshot within a second.
	deadline := time.Now().Add(15 * time.Second)
	for _, err := ctl(ctlToken, "rankings", "--service", "vod"); err != nil; _, err = ctl(ctlToken, "rankings", "--service", "vod") {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := ctl(ctlToken, "whoami")
	if err != nil || !strings.Contains(out, "admin") {
		t.Fatalf("whoami: %v %s", err, out)
	}
	out, err = ctl(ctlToken, "overrides", "add", "--action", "pin", "--cdn", "cdn-b", "--service", "vod", "--region", "eu-west",
		"--reason", "INC-9: ctl test", "--expires", "2h", "--dry-run")
	if err != nil || !strings.Contains(out, "dry run: nothing changed") {
		t.Fatalf("dry run: %v %s", err, out)
	}
	out, err = ctl(ctlToken, "overrides", "add", "--action", "pin", "--cdn", "cdn-b", "--service", "vod", "--region", "eu-west",
		"--reason", "INC-9: ctl test", "--expires", "2h")
	if err != nil {
		t.Fatalf("add: %v %s", err, out)
	}
	id := regexp.MustCompile(`ovr_[0-9a-f]{16}`).FindString(out)
	if id == "" || !strings.Contains(out, "pin cdn-b") || !strings.Contains(out, "vod/eu-west") {
		t.Fatalf("add printed %s", out)
	}
	out, err = ctl(ctlToken, "-o", "json", "overrides", "list")
	var list struct {
		Overrides []struct{ ID, State string } `json:"overrides"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Overrides) != 1 || list.Overrides[0].ID != id {
		t.Fatalf("list -o json: %v %s", err, out)
	}
	out, err = ctl(ctlToken, "overrides", "extend", id, "--expires", "4h", "--reason", "still open")
	if err != nil || !strings.Contains(out, "revision  2") {
		t.Fatalf("extend: %v %s", err, out)
	}
	out, err = ctl(ctlToken, "explain", "--service", "vod", "--ip", "100.64.1.2")
	if err != nil || !strings.Contains(out, "cdn-b") || !strings.Contains(out, id) {
		t.Fatalf("explain: %v %s", err, out)
	}
	for _, args := range [][]string{{"rankings", "--service", "vod"}, {"cdns"}} {
		if out, err = ctl(ctlToken, args...); err != nil || !strings.Contains(out, "cdn-a") {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	out, err = ctl(ctlToken, "overrides", "rm", id, "--reason", "INC-9 resolved")
	if err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("rm: %v %s", err, out)
	}
	out, err = ctl(ctlToken, "audit", "--action", "override.extend")
	if err != nil || !strings.Contains(out, "override.extend") || !strings.Contains(out, id) || strings.Contains(out, "override.create") {
		t.Fatalf("audit: %v %s", err, out)
	}

	// Errors say what is wrong, from the API or from the flags.
	for _, tc := range []struct {
		token string
		args  []string
		want  string
	}{
		{"ctl-test-viewer-token-012345", []string{"overrides", "rm", id, "--reason", "x"}, "needs the operator role"},
		{"wrong-token-0123456789abcdef", []string{"whoami"}, "HTTP 401"},
		{ctlToken, []string{"overrides", "add", "--action", "pin", "--cdn", "cdn-z", "--service", "vod", "--reason", "r", "--expires", "1h"}, "[field cdn]"},
		{ctlToken, []string{"overrides", "add", "--action", "pin", "--cdn", "cdn-b", "--service", "vod", "--reason", "r"}, "--expires"},
		{ctlToken, []string{"overrides", "add", "--action", "weight", "--weights", "cdn-a=lots", "--service", "vod", "--reason", "r", "--expires", "1h"}, "--weights"},
		{ctlToken, []string{"overrides", "extend", "--expires", "1h", "--reason", "r"}, "0 arguments given, want 1"},
		{ctlToken, []string{"-o", "yaml", "whoami"}, "-o"},
		{ctlToken, []string{"frobnicate"}, "unknown command"},
	} {
		out, err := ctl(tc.token, tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("ctl %v: err %v, output %s; want %q", tc.args, err, out, tc.want)
		}
	}

	out, err = ctl("", "hash-token", "s3cret-token")
	if err != nil || strings.TrimSpace(out) != auth.HashToken("s3cret-token") {
		t.Fatalf("hash-token: %v %s", err, out)
	}
}
