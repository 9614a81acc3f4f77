package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cdnpilot/cdnpilot/analytics"
	"github.com/cdnpilot/cdnpilot/internal/auth"
	"github.com/cdnpilot/cdnpilot/ui/api"
)

// ctlCommands are `cdnpilot ctl`'s subcommands; "overrides" has its own.
var ctlCommands = []struct{ name, summary string }{
	{"overrides list", "list overrides (--state active|expired|deleted|all, --service)"},
	{"overrides add", "create an override (--action, --cdn or --weights, --service, --region, --asn, --reason, --expires, --dry-run)"},
	{"overrides extend", "move an override's expiry: ID --expires --reason"},
	{"overrides rm", "end an override now: ID --reason"},
	{"explain", "why a client gets its CDN (--service and --ip, --subnet, --asn or --region)"},
	{"rankings", "the ranking of a service (--service, optional --region, --asn)"},
	{"cdns", "every CDN's health per service and the overrides naming it"},
	{"audit", "the audit trail (--actor, --action, --outcome, --service, --since, --limit)"},
	{"whoami", "who the token is"},
	{"hash-token", "print the SHA-256 of a token for admin.tokens (reads stdin without an argument)"},
	{"gen-token", "print a new random token and its hash"},
}

// ctl is a client of the admin API: flags or env give the server and the
// token; answers print as tables, or as the API's JSON with -o json.
type ctl struct {
	server, token, output string
	timeout               time.Duration
	stdout, stderr        io.Writer
	client                *http.Client
}

// flags registers the flags every ctl command takes, so they may come
// before or after the subcommand.
func (c *ctl) flags(fs *flag.FlagSet) {
	server := os.Getenv("CDNPILOT_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	token := os.Getenv("CDNPILOT_TOKEN")
	if token == "" {
		token = os.Getenv("CDNPILOT_ADMIN_TOKEN")
	}
	fs.StringVar(&c.server, "server", server, "admin API base URL (env CDNPILOT_SERVER)")
	fs.StringVar(&c.token, "token", token, "bearer token (env CDNPILOT_TOKEN, else CDNPILOT_ADMIN_TOKEN)")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "request timeout")
}

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := &ctl{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cdnpilot ctl [--server URL] [--token T] [-o table|json] <command> [flags]\n\ncommands:")
		for _, cmd := range ctlCommands {
			fmt.Fprintf(stderr, "  %-17s %s\n", cmd.name, cmd.summary)
		}
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("ctl: no command given")
	}
	cmd, rest := rest[0], rest[1:]
	if cmd == "overrides" {
		if len(rest) == 0 {
			fs.Usage()
			return errors.New("ctl overrides: list, add, extend or rm?")
		}
		cmd, rest = "overrides "+rest[0], rest[1:]
	}
	run := map[string]func(context.Context, []string) error{
		"overrides list": c.overridesList, "overrides ls": c.overridesList,
		"overrides add": c.overridesAdd, "overrides extend": c.overridesExtend,
		"overrides rm": c.overridesRm, "overrides delete": c.overridesRm,
		"explain": c.explain, "rankings": c.rankings, "cdns": c.cdns, "audit": c.audit, "whoami": c.whoami,
		"hash-token": c.hashToken, "gen-token": c.genToken,
	}[cmd]
	if run == nil {
		fs.Usage()
		return fmt.Errorf("ctl: unknown command %q", cmd)
	}
	return run(ctx, rest)
}

// sub parses a subcommand's flags (its own and the common ones) and
// checks the positional arguments.
func (c *ctl) sub(name string, args []string, nargs int, define func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("ctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	// Registering sets the defaults from env; what the parent parsed
	// (ctl --token X whoami) wins over them.
	server, token, output, timeout := c.server, c.token, c.output, c.timeout
	c.flags(fs)
	c.server, c.token, c.output, c.timeout = server, token, output, timeout
	if define != nil {
		define(fs)
	}
	// Flags may follow the positional argument: ctl overrides rm ID --reason x.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if c.output != "table" && c.output != "json" {
		return nil, fmt.Errorf("-o: %q is not table or json", c.output)
	}
	if len(pos) != nargs {
		return nil, fmt.Errorf("ctl %s: %d arguments given, want %d", name, len(pos), nargs)
	}
	return pos, nil
}

// apiError is an error answer of the API.
type apiError struct {
	Status int
	Msg    string `json:"error"`
	Field  string `json:"field"`
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status)
	if e.Field != "" {
		s = fmt.Sprintf("%s [field %s] (HTTP %d)", e.Msg, e.Field, e.Status)
	}
	return s
}

// call sends one request and decodes a 2xx answer into out; raw is the
// answer's body, for -o json.
func (c *ctl) call(ctx context.Context, method, path string, q url.Values, body, out any) (raw []byte, err error) {
	if c.token == "" {
		return nil, errors.New("no token: pass --token or set CDNPILOT_TOKEN (the demo prints its admin token at start)")
	}
	base, err := url.Parse(strings.TrimRight(c.server, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("--server: %q is not an http(s) URL", c.server)
	}
	u := base.String() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := c.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Msg == "" {
			e.Msg = strings.TrimSpace(string(raw))
		}
		return raw, e
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: the answer is not what this ctl expects: %w", method, path, err)
		}
	}
	return raw, nil
}

// emit prints the API's JSON (-o json) or calls table.
func (c *ctl) emit(raw []byte, table func(w *tabwriter.Writer)) error {
	if c.output == "json" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := c.stdout.Write(buf.Bytes())
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func (c *ctl) overridesList(ctx context.Context, args []string) error {
	var state, service string
	if _, err := c.sub("overrides list", args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&state, "state", "active", "active, expired, deleted or all")
		fs.StringVar(&service, "service", "", "only this service")
	}); err != nil {
		return err
	}
	q := url.Values{"state": {state}}
	if service != "" {
		q.Set("service", service)
	}
	var out api.OverrideList
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/overrides", q, nil, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "ID\tSTATE\tACTION\tTARGET\tSCOPE\tEXPIRES\tBY\tREASON")
		for _, o := range out.Overrides {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.State, o.Action, target(o), scopeText(o.Scope),
				o.ExpiresAt.UTC().Format(time.RFC3339), o.CreatedBy, o.Reason)
		}
		if len(out.Overrides) == 0 {
			fmt.Fprintf(w, "(no %s overrides)\n", state)
		}
	})
}

func target(o api.OverrideJSON) string {
	if len(o.Weights) == 0 {
		return o.CDN
	}
	keys := make([]string, 0, len(o.Weights))
	for k := range o.Weights {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(o.Weights[k], 'f', -1, 64) + "%"
	}
	return strings.Join(parts, ",")
}

func scopeText(s api.ScopeJSON) string {
	out := s.Service
	if s.Region != "" {
		out += "/" + s.Region
	}
	if s.ASN != 0 {
		out += "/AS" + strconv.FormatUint(uint64(s.ASN), 10)
	}
	return out
}

// expiry turns --expires (a duration from now) or --expires-at (RFC 3339)
// into the API's expires_at.
func expiry(in, at string) (string, error) {
	switch {
	case in != "" && at != "":
		return "", errors.New("give --expires or --expires-at, not both")
	case at != "":
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return "", fmt.Errorf("--expires-at: %q is not an RFC 3339 time", at)
		}
		return t.UTC().Format(time.RFC3339), nil
	case in != "":
		d, err := time.ParseDuration(in)
		if err != nil || d <= 0 {
			return "", fmt.Errorf("--expires: %q is not a positive duration like 30m or 4h", in)
		}
		return time.Now().Add(d).UTC().Format(time.RFC3339), nil
	}
	return "", errors.New("--expires (like 2h) or --expires-at is required: every override ends")
}

func parseWeights(s string) (map[string]float64, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		p, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		if !ok || k == "" || err != nil {
			return nil, fmt.Errorf("--weights: %q is not cdn=percent (like cdn-a=70,cdn-b=30)", part)
		}
		out[k] = p
	}
	return out, nil
}

func (c *ctl) overridesAdd(ctx context.Context, args []string) error {
	var req api.OverrideRequest
	var asn uint
	var weights, in, at string
	if _, err := c.sub("overrides add", args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Action, "action", "", "pin, ban, drain or weight")
		fs.StringVar(&req.CDN, "cdn", "", "the CDN (pin, ban, drain)")
		fs.StringVar(&weights, "weights", "", "weight: cdn=percent,... (summing to 100: a split; one CDN: its share)")
		fs.StringVar(&req.Scope.Service, "service", "", "service (required)")
		fs.StringVar(&req.Scope.Region, "region", "", "only this region")
		fs.UintVar(&asn, "asn", 0, "only this ASN (needs --region)")
		fs.StringVar(&req.Reason, "reason", "", "why (required; goes to the audit trail)")
		fs.StringVar(&in, "expires", "", "ends this long from now (like 2h)")
		fs.StringVar(&at, "expires-at", "", "ends at this RFC 3339 time")
		fs.BoolVar(&req.DryRun, "dry-run", false, "show the traffic share change only; change nothing")
	}); err != nil {
		return err
	}
	if asn > 1<<32-1 {
		return fmt.Errorf("--asn: %d is not an AS number", asn)
	}
	req.Scope.ASN = uint32(asn)
	var err error
	if req.Weights, err = parseWeights(weights); err != nil {
		return err
	}
	if req.ExpiresAt, err = expiry(in, at); err != nil {
		return err
	}
	if req.DryRun {
		var out api.DryRunJSON
		raw, err := c.call(ctx, http.MethodPost, "/api/v1/overrides", nil, req, &out)
		if err != nil {
			return err
		}
		return c.emit(raw, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "dry run: nothing changed (snapshot %d)\n", out.SnapshotVersion)
			fmt.Fprintln(w, "SCOPE\tCDN\tBEFORE\tAFTER\tCHANGE")
			for _, ch := range out.Changes {
				cdns := make([]string, 0, len(ch.DeltaPP))
				for k := range ch.DeltaPP {
					cdns = append(cdns, k)
				}
				sort.Strings(cdns)
				for _, cdn := range cdns {
					fmt.Fprintf(w, "%s\t%s\t%.1f%%\t%.1f%%\t%+.1f pp\n", scopeString(ch), cdn, 100*ch.Before[cdn], 100*ch.After[cdn], ch.DeltaPP[cdn])
				}
			}
			if len(out.Changes) == 0 {
				fmt.Fprintln(w, "(no ranked scope would change)")
			}
		})
	}
	var out api.OverrideJSON
	raw, err := c.call(ctx, http.MethodPost, "/api/v1/overrides", nil, req, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) { overrideTable(w, out) })
}

func scopeString(ch api.ShareChangeJSON) string { return ch.Scope.String() }

func overrideTable(w *tabwriter.Writer, o api.OverrideJSON) {
	fmt.Fprintf(w, "id\t%s\nstate\t%s\naction\t%s %s\nscope\t%s\nreason\t%s\nexpires\t%s\nrevision\t%d (by %s at %s)\n",
		o.ID, o.State, o.Action, target(o), scopeText(o.Scope), o.Reason, o.ExpiresAt.UTC().Format(time.RFC3339),
		o.Revision, o.UpdatedBy, o.UpdatedAt.UTC().Format(time.RFC3339))
}

func (c *ctl) overridesExtend(ctx context.Context, args []string) error {
	var req api.ExtendRequest
	var in, at string
	pos, err := c.sub("overrides extend", args, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Reason, "reason", "", "why (required)")
		fs.StringVar(&in, "expires", "", "ends this long from now (like 2h)")
		fs.StringVar(&at, "expires-at", "", "ends at this RFC 3339 time")
	})
	if err != nil {
		return err
	}
	if req.ExpiresAt, err = expiry(in, at); err != nil {
		return err
	}
	var out api.OverrideJSON
	raw, err := c.call(ctx, http.MethodPost, "/api/v1/overrides/"+url.PathEscape(pos[0])+"/extend", nil, req, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) { overrideTable(w, out) })
}

func (c *ctl) overridesRm(ctx context.Context, args []string) error {
	var req api.DeleteRequest
	pos, err := c.sub("overrides rm", args, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Reason, "reason", "", "why (required)")
	})
	if err != nil {
		return err
	}
	var out api.OverrideJSON
	raw, err := c.call(ctx, http.MethodDelete, "/api/v1/overrides/"+url.PathEscape(pos[0]), nil, req, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) { overrideTable(w, out) })
}

func (c *ctl) explain(ctx context.Context, args []string) error {
	var service, ip, subnet, region, asn, view string
	if _, err := c.sub("explain", args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&service, "service", "", "service (required)")
		fs.StringVar(&ip, "ip", "", "client address")
		fs.StringVar(&subnet, "subnet", "", "client subnet (as an ECS option would give it)")
		fs.StringVar(&region, "region", "", "a region (with an optional --asn)")
		fs.StringVar(&asn, "asn", "", "an AS number")
		fs.StringVar(&view, "view-id", "", "the view whose pick to show")
	}); err != nil {
		return err
	}
	q := url.Values{"service": {service}}
	for k, v := range map[string]string{"ip": ip, "subnet": subnet, "region": region, "asn": asn, "view_id": view} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out api.ExplainJSON
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/decisions/explain", q, nil, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) {
		l := out.Location
		fmt.Fprintf(w, "client\t%s\nlocation\tcountry %s, region %s, AS%d (located: %v)\ncdn\t%s (%s)\nrule\t%s in scope %s\nsnapshot\t%d, %.1fs old\n\n",
			out.Client, dash(l.Country), dash(l.Region), l.ASN, out.Located, out.Decision.CDN, out.Decision.Host,
			out.Decision.Rule, out.Decision.Scope.String(), out.Decision.SnapshotVersion, out.Decision.SnapshotAge)
		for _, line := range out.Why {
			fmt.Fprintln(w, "- "+line)
		}
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *ctl) rankings(ctx context.Context, args []string) error {
	var service, region, asn string
	if _, err := c.sub("rankings", args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&service, "service", "", "service (required)")
		fs.StringVar(&region, "region", "", "only the ranking that answers this region")
		fs.StringVar(&asn, "asn", "", "...and this ASN")
	}); err != nil {
		return err
	}
	q := url.Values{"service": {service}}
	if region != "" {
		q.Set("region", region)
	}
	if asn != "" {
		q.Set("asn", asn)
	}
	var out struct {
		Version    uint64  `json:"version"`
		AgeSeconds float64 `json:"age_seconds"`
		Rankings   []struct {
			Scope struct {
				Level, Region, Country string
				ASN                    uint32
			} `json:"scope"`
			Rule    string `json:"rule"`
			Choices []struct {
				CDN        string  `json:"cdn"`
				Weight     float64 `json:"weight"`
				Score      float64 `json:"score"`
				Confidence float64 `json:"confidence"`
				ScoreScope string  `json:"score_scope"`
				Health     string  `json:"health"`
				Reason     string  `json:"reason"`
			} `json:"choices"`
		} `json:"rankings"`
	}
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/rankings", q, nil, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "snapshot %d, %.1fs old\n", out.Version, out.AgeSeconds)
		fmt.Fprintln(w, "SCOPE\tRULE\tCDN\tWEIGHT\tSCORE\tCONF\tFROM\tHEALTH\tREASON")
		for _, r := range out.Rankings {
			scope := r.Scope.Level
			switch {
			case r.Scope.ASN != 0:
				scope = r.Scope.Region + "/AS" + strconv.FormatUint(uint64(r.Scope.ASN), 10)
			case r.Scope.Region != "":
				scope = r.Scope.Region
			case r.Scope.Country != "":
				scope = r.Scope.Country
			}
			for _, ch := range r.Choices {
				score := "-"
				if ch.Score >= 0 {
					score = strconv.FormatFloat(ch.Score, 'f', 1, 64)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%.3f\t%s\t%.2f\t%s\t%s\t%s\n", scope, r.Rule, ch.CDN, ch.Weight, score, ch.Confidence, ch.ScoreScope, ch.Health, ch.Reason)
			}
		}
	})
}

func (c *ctl) cdns(ctx context.Context, args []string) error {
	if _, err := c.sub("cdns", args, 0, nil); err != nil {
		return err
	}
	var out api.CDNList
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/cdns", nil, nil, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "CDN\tSERVICE\tHEALTH\tWEIGHT\tSCORE\tDOWN IN\tOVERRIDES")
		for _, cdn := range out.CDNs {
			ids := make([]string, len(cdn.Overrides))
			for i, o := range cdn.Overrides {
				ids[i] = o.Action + ":" + o.ID
			}
			for _, s := range cdn.Services {
				fmt.Fprintf(w, "%s\t%s\t%s\t%.3f\t%.1f\t%s\t%s\n", cdn.Name, s.Service, s.Health, s.Weight, s.Score, dash(strings.Join(s.Down, ",")), dash(strings.Join(ids, ",")))
			}
		}
	})
}

func (c *ctl) audit(ctx context.Context, args []string) error {
	q := url.Values{}
	vals := map[string]*string{}
	if _, err := c.sub("audit", args, 0, func(fs *flag.FlagSet) {
		for _, k := range []string{"actor", "action", "outcome", "service", "override_id", "since", "until", "limit", "before"} {
			v := new(string)
			vals[k] = v
			fs.StringVar(v, strings.ReplaceAll(k, "_", "-"), "", "filter: "+k)
		}
	}); err != nil {
		return err
	}
	for k, v := range vals {
		if *v != "" {
			q.Set(k, *v)
		}
	}
	var out struct {
		Records []analytics.AuditRecord `json:"records"`
		Next    string                  `json:"next"`
	}
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/audit", q, nil, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "AT\tACTOR\tROLE\tSOURCE\tACTION\tOUTCOME\tSTATUS\tOVERRIDE\tREASON")
		for _, r := range out.Records {
			reason := r.Reason
			if reason == "" {
				reason = r.Detail
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.At.UTC().Format(time.RFC3339), dash(r.Actor), dash(r.Role), r.Source,
				r.Action, r.Outcome, r.Status, dash(r.OverrideID), reason)
		}
		if out.Next != "" {
			fmt.Fprintf(w, "(more: --before %s)\n", out.Next)
		}
	})
}

func (c *ctl) whoami(ctx context.Context, args []string) error {
	if _, err := c.sub("whoami", args, 0, nil); err != nil {
		return err
	}
	var out struct {
		Name     string   `json:"name"`
		Role     string   `json:"role"`
		Via      string   `json:"via"`
		Services []string `json:"services"`
	}
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/whoami", nil, nil, &out)
	if err != nil {
		return err
	}
	return c.emit(raw, func(w *tabwriter.Writer) {
		svcs := "all"
		if len(out.Services) > 0 {
			svcs = strings.Join(slices.Sorted(slices.Values(out.Services)), ", ")
		}
		fmt.Fprintf(w, "name\t%s\nrole\t%s\nvia\t%s\nservices\t%s\n", out.Name, out.Role, out.Via, svcs)
	})
}

func (c *ctl) hashToken(_ context.Context, args []string) error {
	pos := args
	if len(pos) > 1 {
		return fmt.Errorf("ctl hash-token: %d arguments given, want the token or none (then stdin)", len(pos))
	}
	var tok string
	if len(pos) == 1 {
		tok = pos[0]
	} else {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		tok = strings.TrimSpace(line)
	}
	if tok == "" {
		return errors.New("ctl hash-token: empty token")
	}
	fmt.Fprintln(c.stdout, auth.HashToken(tok))
	return nil
}

func (c *ctl) genToken(_ context.Context, args []string) error {
	if len(args) != 0 {
		return errors.New("ctl gen-token takes no arguments")
	}
	tok, err := auth.GenerateToken()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "token   %s\nsha256  %s\n", tok, auth.HashToken(tok))
	return nil
}
