package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	mdns "github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	alertsFile     = "prometheus/alerts.yml"
	recordingFile  = "prometheus/recording.yml"
	prometheusFile = "prometheus/prometheus.yml"
	dashboardsDir  = "grafana/dashboards"
	provisioning   = "grafana/provisioning"
	operationsDoc  = "../../docs/OPERATIONS.md"
	runbookPrefix  = "https://github.com/cdnpilot/cdnpilot/blob/main/docs/OPERATIONS.md#"
)

// roles are the values of the `role` target label the rules and
// dashboards group by.
var roles = []string{"ingest", "consume", "score", "steer", "admin"}

func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// loadRules parses a rule file the way Prometheus does and fails the test
// on any error.
func loadRules(t *testing.T, file string) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(file, false, model.LegacyValidation, newParser(), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

// TestRuleFiles: both files load as Prometheus loads them, hold only
// their kind of rule, and every expression parses.
func TestRuleFiles(t *testing.T) {
	names := map[string]string{}
	for _, f := range []struct {
		file   string
		alerts bool
	}{{recordingFile, false}, {alertsFile, true}} {
		groups := loadRules(t, f.file)
		n := 0
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				n++
				name := r.Record
				switch {
				case f.alerts && r.Alert == "":
					t.Errorf("%s: recording rule %s in the alerts file", f.file, r.Record)
				case !f.alerts && r.Record == "":
					t.Errorf("%s: alert %s in the recording file", f.file, r.Alert)
				case f.alerts:
					name = r.Alert
					if !strings.HasPrefix(name, "Cdnpilot") {
						t.Errorf("%s: alert %s: names start with Cdnpilot", f.file, name)
					}
				case strings.Count(name, ":") != 2:
					t.Errorf("%s: record %s is not level:metric:operation", f.file, name)
				}
				if prev, ok := names[name]; ok {
					t.Errorf("%s: %s is defined twice (also in %s)", f.file, name, prev)
				}
				names[name] = f.file
				if _, err := newParser().ParseExpr(r.Expr); err != nil {
					t.Errorf("%s: %s: %v", f.file, name, err)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no rules", f.file)
		}
	}
}

// TestAlertAnnotations: every alert says how bad it is, what happened, and
// where its runbook is: a subsection of "## Alerts" in OPERATIONS.md, and
// every such subsection belongs to an alert.
func TestAlertAnnotations(t *testing.T) {
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	all, inAlerts := map[string]bool{}, map[string]bool{}
	for _, h := range headings(string(doc)) {
		all[h.anchor] = true
		if h.level == 3 && h.section == "Alerts" {
			inAlerts[h.anchor] = true
		}
	}
	if len(inAlerts) == 0 {
		t.Fatalf("%s has no subsections under ## Alerts", operationsDoc)
	}
	used := map[string]bool{}
	for _, g := range loadRules(t, alertsFile).Groups {
		for _, r := range g.Rules {
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbookPrefix)
			switch {
			case !ok:
				t.Errorf("%s: runbook_url %q does not start with %s", r.Alert, url, runbookPrefix)
			case !all[anchor]:
				t.Errorf("%s: runbook_url anchor #%s is no heading of %s", r.Alert, anchor, operationsDoc)
			case !inAlerts[anchor]:
				t.Errorf("%s: runbook_url anchor #%s is not a subsection of ## Alerts", r.Alert, anchor)
			}
			used[anchor] = true
		}
	}
	for a := range inAlerts {
		if !used[a] {
			t.Errorf("%s#%s: a runbook under ## Alerts that no alert points to", operationsDoc, a)
		}
	}
	for _, err := range brokenLinks(string(doc), "Alerts", filepath.Dir(operationsDoc)) {
		t.Error(err)
	}
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// brokenLinks are the links of a section of a Markdown document, in dir,
// whose file or heading does not exist.
func brokenLinks(doc, section, dir string) []string {
	var (
		out  []string
		text strings.Builder
		in   bool
	)
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(line, "## ") {
			in = strings.TrimSpace(line[3:]) == section
		}
		if in {
			text.WriteString(line)
		}
	}
	for _, m := range linkRE.FindAllStringSubmatch(text.String(), -1) {
		file, anchor, _ := strings.Cut(m[1], "#")
		if strings.Contains(file, "://") {
			continue
		}
		target := doc
		if file != "" {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				out = append(out, fmt.Sprintf("## %s: link %s: %v", section, m[1], err))
				continue
			}
			target = string(b)
		}
		if anchor == "" {
			continue
		}
		found := false
		for _, h := range headings(target) {
			found = found || h.anchor == anchor
		}
		if !found {
			out = append(out, fmt.Sprintf("## %s: link %s: no such heading", section, m[1]))
		}
	}
	return out
}

type heading struct {
	level   int
	text    string
	anchor  string
	section string // the text of the level-2 heading it is under
}

var headingRE = regexp.MustCompile(`^(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$`)

// headings are a Markdown document's ATX headings outside code fences,
// with the anchors GitHub gives them.
func headings(doc string) []heading {
	var (
		out     []heading
		fence   string
		section string
		seen    = map[string]int{}
	)
	for line := range strings.Lines(doc) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		m := headingRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		h := heading{level: len(m[1]), text: m[2]}
		base := githubAnchor(h.text)
		h.anchor = base
		if n := seen[base]; n > 0 {
			h.anchor = fmt.Sprintf("%s-%d", base, n)
		}
		seen[base]++
		if h.level == 2 {
			section = h.text
		}
		h.section = section
		out = append(out, h)
	}
	return out
}

// githubAnchor is GitHub's heading slug: lower case, punctuation other
// than '-' and '_' dropped, spaces to '-'.
func githubAnchor(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGitHubAnchors(t *testing.T) {
	doc := "# Operations\n## Alerts\n### CdnpilotDNSServfail\n```sh\n# not a heading\n```\n" +
		"### Broker down (ingest answers 503)\n### Runbook: answers look wrong\n### `cdnpilot_consumer_lag` caveat\n## Alerts\n"
	var got []string
	for _, h := range headings(doc) {
		got = append(got, h.anchor)
	}
	want := []string{"operations", "alerts", "cdnpilotdnsservfail", "broker-down-ingest-answers-503",
		"runbook-answers-look-wrong", "cdnpilot_consumer_lag-caveat", "alerts-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("anchors %q, want %q", got, want)
	}
}

func TestBrokenLinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "OTHER.md"), []byte("# Other\n## Fail-open\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := "## Alerts\n### A\n[ok](#a) [ok](OTHER.md#fail-open) [ok](OTHER.md) [ok](https://example.com/#x)\n" +
		"[bad](#nope) [bad](OTHER.md#nope) [bad](MISSING.md)\n## Later\n[not checked](#nope2)\n"
	got := brokenLinks(doc, "Alerts", dir)
	if len(got) != 3 || !strings.Contains(got[0], "#nope") || !strings.Contains(got[1], "OTHER.md#nope") || !strings.Contains(got[2], "MISSING.md") {
		t.Fatalf("broken links %q, want #nope, OTHER.md#nope and MISSING.md", got)
	}
}

// promConfig is the part of Prometheus' configuration prometheus.yml
// uses, decoded strictly: a key outside it is an error.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		ScrapeTimeout      string `yaml:"scrape_timeout"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string `yaml:"job_name"`
	MetricsPath   string `yaml:"metrics_path"`
	StaticConfigs []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	} `yaml:"static_configs"`
	KubernetesSDConfigs []struct {
		Role       string `yaml:"role"`
		Namespaces struct {
			Names []string `yaml:"names"`
		} `yaml:"namespaces"`
	} `yaml:"kubernetes_sd_configs"`
	RelabelConfigs []struct {
		SourceLabels []string `yaml:"source_labels"`
		Regex        string   `yaml:"regex"`
		TargetLabel  string   `yaml:"target_label"`
		Action       string   `yaml:"action"`
	} `yaml:"relabel_configs"`
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func loadPrometheusConfig(t *testing.T) (promConfig, []byte) {
	t.Helper()
	data, err := os.ReadFile(prometheusFile)
	if err != nil {
		t.Fatal(err)
	}
	var c promConfig
	if err := decodeStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", prometheusFile, err)
	}
	return c, data
}

// targetLabels are the labels Prometheus adds to every series it scrapes
// from cdnpilot: job, instance and the static config's labels.
func targetLabels(t *testing.T) labelSet {
	t.Helper()
	c, _ := loadPrometheusConfig(t)
	ls := labelSet{"job": true, "instance": true}
	for _, sc := range c.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for k := range st.Labels {
				ls[k] = true
			}
		}
	}
	return ls
}

// TestPrometheusConfig: prometheus.yml loads the two rule files, which
// exist, and scrapes every process of the Compose stack with its role;
// the commented Kubernetes example is valid and sets the same label.
func TestPrometheusConfig(t *testing.T) {
	c, data := loadPrometheusConfig(t)
	for _, d := range []string{c.Global.ScrapeInterval, c.Global.ScrapeTimeout, c.Global.EvaluationInterval} {
		if _, err := model.ParseDuration(d); err != nil {
			t.Errorf("global: %v", err)
		}
	}
	dir := filepath.Dir(prometheusFile)
	var files []string
	for _, f := range c.RuleFiles {
		files = append(files, filepath.Join(dir, f))
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("rule_files: %v", err)
		}
	}
	sort.Strings(files)
	if want := []string{alertsFile, recordingFile}; !slices.Equal(files, want) {
		t.Errorf("rule_files %q, want %q", files, want)
	}

	want := map[string]string{
		"ingest-1:8080": "ingest", "ingest-2:8080": "ingest", "consume:8080": "consume", "score-1:8080": "score", "score-2:8080": "score",
		"steer-1:8080": "steer", "steer-2:8080": "steer", "admin:8080": "admin",
	}
	got := map[string]string{}
	for _, sc := range c.ScrapeConfigs {
		if sc.JobName != "cdnpilot" || sc.MetricsPath != "/metrics" {
			t.Errorf("scrape config %q path %q, want job cdnpilot on /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				if _, _, err := net.SplitHostPort(tg); err != nil {
					t.Errorf("target %q: %v", tg, err)
				}
				got[tg] = st.Labels["role"]
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("targets and roles %v, want %v", got, want)
	}

	k8s := commentedBlock(t, string(data), "kubernetes_sd example")
	var jobs []scrapeConfig
	if err := decodeStrict([]byte(k8s), &jobs); err != nil {
		t.Fatalf("kubernetes_sd example: %v\n%s", err, k8s)
	}
	if len(jobs) != 1 || jobs[0].JobName != "cdnpilot" || len(jobs[0].KubernetesSDConfigs) != 1 || jobs[0].KubernetesSDConfigs[0].Role != "pod" {
		t.Fatalf("kubernetes_sd example: want one cdnpilot job with a pod kubernetes_sd_config, got %+v", jobs)
	}
	setsRole := false
	for _, rc := range jobs[0].RelabelConfigs {
		if _, err := regexp.Compile("^(?:" + rc.Regex + ")$"); err != nil {
			t.Errorf("kubernetes_sd example: regex %q: %v", rc.Regex, err)
		}
		if rc.TargetLabel == "role" {
			setsRole = true
			re := regexp.MustCompile("^(?:" + rc.Regex + ")$")
			for _, r := range roles {
				if !re.MatchString(r) {
					t.Errorf("kubernetes_sd example: role %s does not match %q", r, rc.Regex)
				}
			}
		}
	}
	if !setsRole {
		t.Error("kubernetes_sd example does not set the role label the rules group by")
	}
}

// commentedBlock is the YAML commented out between "# BEGIN name" and
// "# END name", from its first "- " item on, uncommented.
func commentedBlock(t *testing.T, doc, name string) string {
	t.Helper()
	var (
		out        strings.Builder
		in, inCode bool
	)
	for line := range strings.Lines(doc) {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "# BEGIN "+name:
			in = true
			continue
		case trimmed == "# END "+name:
			return out.String()
		case !in:
			continue
		}
		body, ok := strings.CutPrefix(trimmed, "# ")
		if !ok {
			t.Fatalf("%s: line %q inside the commented block", name, line)
		}
		if strings.HasPrefix(body, "- ") {
			inCode = true
		}
		if inCode {
			// Keep the indentation after "# ".
			i := strings.Index(line, "# ")
			out.WriteString(line[i+2:])
		}
	}
	t.Fatalf("no # BEGIN %s ... # END %s block", name, name)
	return ""
}

// TestProvisioning: Grafana's provisioning files decode into what Grafana
// reads and point at the Prometheus of prometheus.yml's Compose stack.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string `yaml:"name"`
			UID       string `yaml:"uid"`
			Type      string `yaml:"type"`
			Access    string `yaml:"access"`
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
			Editable  bool   `yaml:"editable"`
			JSONData  struct {
				TimeInterval string `yaml:"timeInterval"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(provisioning, "datasources", "prometheus.yml"), &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Errorf("datasources: want one prometheus data source with a url, apiVersion 1: %+v", ds)
	}

	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			OrgID                 int    `yaml:"orgId"`
			Folder                string `yaml:"folder"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(provisioning, "dashboards", "cdnpilot.yml"), &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || !strings.HasPrefix(dp.Providers[0].Options.Path, "/") {
		t.Errorf("dashboards: want one file provider with an absolute path, apiVersion 1: %+v", dp)
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// dashboard is the part of Grafana's dashboard JSON model the tests read.
type dashboard struct {
	file          string
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	Targets    []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasourceRef  `json:"datasource"`
}

// query is a query variable's query: a string, or {"query": "..."}.
func (v variable) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

func loadDashboards(t *testing.T) []dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no dashboards in %s", dashboardsDir)
	}
	var out []dashboard
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		d.file = f
		out = append(out, d)
	}
	return out
}

// panels are a dashboard's panels, those of collapsed rows included.
func (d dashboard) panels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// grafanaVars are Grafana's built-in interval variables, replaced by a
// duration before an expression is parsed.
var grafanaVars = strings.NewReplacer("${__rate_interval}", "5m", "$__rate_interval", "5m",
	"${__interval}", "1m", "$__interval", "1m", "${__range}", "1h", "$__range", "1h")

var varRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// TestDashboards: every dashboard parses, has its own uid and title, a
// Prometheus data source variable that every panel uses, and queries
// that parse, using only the variables it defines.
func TestDashboards(t *testing.T) {
	uids, titles := map[string]string{}, map[string]string{}
	for _, d := range loadDashboards(t) {
		switch {
		case d.UID == "" || d.Title == "":
			t.Errorf("%s: uid %q title %q", d.file, d.UID, d.Title)
		case uids[d.UID] != "":
			t.Errorf("%s: uid %s also in %s", d.file, d.UID, uids[d.UID])
		case titles[d.Title] != "":
			t.Errorf("%s: title %q also in %s", d.file, d.Title, titles[d.Title])
		}
		uids[d.UID], titles[d.Title] = d.file, d.file
		if d.SchemaVersion < 36 {
			t.Errorf("%s: schemaVersion %d, want a current one (36 or later)", d.file, d.SchemaVersion)
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
			switch {
			case v.Name == "datasource":
				if v.Type != "datasource" || v.query() != "prometheus" {
					t.Errorf("%s: variable datasource is %s %q, want a prometheus datasource variable", d.file, v.Type, v.query())
				}
			case v.Type == "query":
				if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
					t.Errorf("%s: variable %s does not query ${datasource}", d.file, v.Name)
				}
				if _, _, err := labelValues(v.query()); err != nil {
					t.Errorf("%s: variable %s: %v", d.file, v.Name, err)
				}
			}
		}
		if !vars["datasource"] {
			t.Errorf("%s: no datasource variable", d.file)
		}
		ids := map[int]bool{}
		nTargets := 0
		for _, p := range d.panels() {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", d.file, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q does not use ${datasource}", d.file, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no targets", d.file, p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				nTargets++
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: panel %q: refId %q empty or repeated", d.file, p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q target %s has no expr", d.file, p.Title, tg.RefID)
					continue
				}
				if _, err := newParser().ParseExpr(grafanaVars.Replace(tg.Expr)); err != nil {
					t.Errorf("%s: panel %q target %s: %v", d.file, p.Title, tg.RefID, err)
				}
				for _, m := range varRE.FindAllStringSubmatch(grafanaVars.Replace(tg.Expr), -1) {
					if !vars[m[1]] {
						t.Errorf("%s: panel %q target %s uses $%s, which the dashboard does not define", d.file, p.Title, tg.RefID, m[1])
					}
				}
			}
		}
		if nTargets == 0 {
			t.Errorf("%s: no queries", d.file)
		}
	}
	for _, role := range []string{"overview", "ingest", "consume", "score", "steer", "admin"} {
		if uids["cdnpilot-"+role] == "" {
			t.Errorf("no dashboard with uid cdnpilot-%s", role)
		}
	}
}

var labelValuesRE = regexp.MustCompile(`^label_values\((?:(.+),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$`)

// labelValues splits Grafana's label_values(selector, label).
func labelValues(q string) (selector, label string, err error) {
	m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q))
	if m == nil || m[1] == "" {
		return "", "", fmt.Errorf("query %q: want label_values(metric{...}, label)", q)
	}
	return m[1], m[2], nil
}

// labelSet is the set of label names a series or an expression's result
// may carry.
type labelSet map[string]bool

func (s labelSet) clone() labelSet {
	out := labelSet{}
	for k := range s {
		out[k] = true
	}
	return out
}

func (s labelSet) String() string {
	var names []string
	for k := range s {
		names = append(names, k)
	}
	sort.Strings(names)
	return "{" + strings.Join(names, ", ") + "}"
}

func (s labelSet) equal(o labelSet) bool { return s.String() == o.String() }

func (s labelSet) without(names []string) labelSet {
	out := s.clone()
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// exported is what a Registry gathers as Prometheus will see it: each
// series name (a histogram's _bucket, _sum and _count) with its labels,
// plus the target labels.
func exported(families []*dto.MetricFamily, target labelSet) map[string]labelSet {
	out := map[string]labelSet{}
	for _, mf := range families {
		base := target.clone()
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				base[lp.GetName()] = true
			}
		}
		name := mf.GetName()
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			b := base.clone()
			b["le"] = true
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = b, base, base
		case dto.MetricType_SUMMARY:
			q := base.clone()
			q["quantile"] = true
			out[name], out[name+"_sum"], out[name+"_count"] = q, base, base
		default:
			out[name] = base
		}
	}
	return out
}

// checker infers the labels of PromQL expressions over known series and
// reports every series, label or vector match that cannot work.
type checker struct {
	known map[string]labelSet
	errs  []string
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

func (c *checker) need(have labelSet, names []string, what string) {
	for _, n := range names {
		if !have[n] {
			c.errorf("%s: label %q is not among %s", what, n, have)
		}
	}
}

// labels is the set of labels e's result may carry.
func (c *checker) labels(e parser.Expr) labelSet {
	switch n := e.(type) {
	case *parser.VectorSelector:
		name := n.Name
		for _, m := range n.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		ls, ok := c.known[name]
		if !ok {
			c.errorf("%s: cdnpilot exports no series %q", n, name)
			return labelSet{}
		}
		for _, m := range n.LabelMatchers {
			if m.Name != model.MetricNameLabel && !ls[m.Name] {
				c.errorf("%s: %s has no label %q (it has %s)", n, name, m.Name, ls)
			}
		}
		return ls.clone()
	case *parser.MatrixSelector:
		return c.labels(n.VectorSelector)
	case *parser.SubqueryExpr:
		return c.labels(n.Expr)
	case *parser.ParenExpr:
		return c.labels(n.Expr)
	case *parser.StepInvariantExpr:
		return c.labels(n.Expr)
	case *parser.UnaryExpr:
		return c.labels(n.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return labelSet{}
	case *parser.AggregateExpr:
		in := c.labels(n.Expr)
		if n.Param != nil {
			c.labels(n.Param)
		}
		c.need(in, n.Grouping, n.String())
		switch {
		case n.Op == parser.TOPK || n.Op == parser.BOTTOMK || n.Op == parser.LIMITK || n.Op == parser.LIMIT_RATIO:
			return in
		case n.Without:
			return in.without(n.Grouping)
		}
		out := labelSet{}
		for _, g := range n.Grouping {
			out[g] = true
		}
		if n.Op == parser.COUNT_VALUES {
			if s, ok := n.Param.(*parser.StringLiteral); ok {
				out[s.Val] = true
			}
		}
		return out
	case *parser.Call:
		return c.call(n)
	case *parser.BinaryExpr:
		return c.binary(n)
	}
	c.errorf("%s: expression type %T not understood by the test", e, e)
	return labelSet{}
}

func (c *checker) call(n *parser.Call) labelSet {
	args := make([]labelSet, len(n.Args))
	for i, a := range n.Args {
		args[i] = c.labels(a)
	}
	str := func(i int) string {
		if s, ok := n.Args[i].(*parser.StringLiteral); ok {
			return s.Val
		}
		return ""
	}
	switch n.Func.Name {
	case "histogram_quantile":
		c.need(args[1], []string{"le"}, n.String())
		return args[1].without([]string{"le"})
	case "label_replace":
		if src := str(3); src != "" {
			c.need(args[0], []string{src}, n.String())
		}
		out := args[0].clone()
		out[str(1)] = true
		return out
	case "label_join":
		for i := 3; i < len(n.Args); i++ {
			c.need(args[0], []string{str(i)}, n.String())
		}
		out := args[0].clone()
		out[str(1)] = true
		return out
	case "absent", "absent_over_time":
		out := labelSet{}
		parser.Inspect(n.Args[0], func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				for _, m := range vs.LabelMatchers {
					if m.Type == labels.MatchEqual && m.Name != model.MetricNameLabel {
						out[m.Name] = true
					}
				}
			}
			return nil
		})
		return out
	}
	for i, a := range n.Args {
		if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
			return args[i]
		}
	}
	return labelSet{}
}

func (c *checker) binary(n *parser.BinaryExpr) labelSet {
	l, r := c.labels(n.LHS), c.labels(n.RHS)
	lv, rv := n.LHS.Type() == parser.ValueTypeVector, n.RHS.Type() == parser.ValueTypeVector
	switch {
	case lv && !rv:
		return l
	case rv && !lv:
		return r
	case !lv && !rv:
		return labelSet{}
	}
	vm := n.VectorMatching
	if vm == nil {
		vm = &parser.VectorMatching{Card: parser.CardOneToOne}
	}
	what := n.String()
	if vm.On {
		c.need(l, vm.MatchingLabels, what+" (left side)")
		c.need(r, vm.MatchingLabels, what+" (right side)")
	} else {
		c.need(labelsUnion(l, r), vm.MatchingLabels, what)
		// Without on (...), both sides must carry the same labels to
		// match (and, unless, arithmetic, comparisons; or takes either).
		if n.Op != parser.LOR && vm.Card != parser.CardManyToOne && vm.Card != parser.CardOneToMany &&
			!l.without(vm.MatchingLabels).equal(r.without(vm.MatchingLabels)) {
			c.errorf("%s: the sides carry %s and %s, so no series can match", what, l, r)
		}
	}
	switch {
	case n.Op == parser.LOR:
		return labelsUnion(l, r)
	case n.Op == parser.LAND || n.Op == parser.LUNLESS:
		return l
	case vm.Card == parser.CardManyToOne:
		c.need(r, vm.Include, what+" (group_left)")
		return labelsUnion(l, labelSetOf(vm.Include))
	case vm.Card == parser.CardOneToMany:
		c.need(l, vm.Include, what+" (group_right)")
		return labelsUnion(r, labelSetOf(vm.Include))
	case vm.On:
		return labelSetOf(vm.MatchingLabels)
	}
	return l.without(vm.MatchingLabels)
}

func labelsUnion(a, b labelSet) labelSet {
	out := a.clone()
	for k := range b {
		out[k] = true
	}
	return out
}

func labelSetOf(names []string) labelSet {
	out := labelSet{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

// legendRE finds {{label}} in a legend format.
var legendRE = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// query is one expression of the rules or dashboards, with where it is.
type query struct {
	where, expr, legend string
	record              string // the series a recording rule defines
}

// queries are every expression of the rules (recording rules first, in
// order, so later rules can use earlier ones) and of the dashboards.
func queries(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, f := range []string{recordingFile, alertsFile} {
		for _, g := range loadRules(t, f).Groups {
			for _, r := range g.Rules {
				out = append(out, query{where: f + ": " + r.Record + r.Alert, expr: r.Expr, record: r.Record})
			}
		}
	}
	for _, d := range loadDashboards(t) {
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			sel, label, err := labelValues(v.query())
			if err != nil {
				t.Fatalf("%s: variable %s: %v", d.file, v.Name, err)
			}
			// label_values(sel, label) works when sel carries label.
			out = append(out, query{where: d.file + ": variable " + v.Name, expr: "sum by (" + label + ") (" + sel + ")"})
		}
		for _, p := range d.panels() {
			for _, tg := range p.Targets {
				out = append(out, query{where: fmt.Sprintf("%s: panel %q target %s", d.file, p.Title, tg.RefID),
					expr: grafanaVars.Replace(tg.Expr), legend: tg.LegendFormat})
			}
		}
	}
	return out
}

// check runs every query through a checker over the known series, and
// returns the problems.
func check(qs []query, known map[string]labelSet) []string {
	known = maps.Clone(known)
	var out []string
	for _, q := range qs {
		e, err := newParser().ParseExpr(q.expr)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", q.where, err))
			continue
		}
		c := &checker{known: known}
		ls := c.labels(e)
		for _, m := range legendRE.FindAllStringSubmatch(q.legend, -1) {
			if !ls[m[1]] {
				c.errorf("legend {{%s}}: the query's series carry only %s", m[1], ls)
			}
		}
		for _, err := range c.errs {
			out = append(out, q.where+": "+err)
		}
		if q.record != "" {
			known[q.record] = ls
		}
	}
	return out
}

// selectorNames are the series names the queries select, recorded
// series left out.
func selectorNames(t *testing.T, qs []query) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, q := range qs {
		e, err := newParser().ParseExpr(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q.where, err)
		}
		parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok && !strings.Contains(vs.Name, ":") {
				seen[vs.Name] = true
			}
			return nil
		})
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestCheckerCatches: the checker refuses what would silently select
// nothing in Prometheus.
func TestCheckerCatches(t *testing.T) {
	known := map[string]labelSet{
		"a_total":   {"job": true, "instance": true, "cdn": true},
		"b_total":   {"job": true, "instance": true},
		"h_bucket":  {"job": true, "le": true},
		"up":        {"job": true, "instance": true},
		"c_seconds": {"job": true, "service": true},
	}
	for _, tc := range []struct {
		expr string
		want string // part of the error; "" for none
	}{
		{`sum by (cdn) (rate(a_total[5m]))`, ""},
		{`sum by (cdn) (rate(b_total[5m]))`, `label "cdn"`},
		{`rate(nope_total[5m])`, `no series "nope_total"`},
		{`a_total{region="x"}`, `no label "region"`},
		{`histogram_quantile(0.99, sum by (job) (rate(h_bucket[5m])))`, `label "le"`},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`, ""},
		{`a_total / b_total`, "no series can match"},
		{`sum without (cdn) (a_total) / b_total`, ""},
		{`a_total / on (instance) group_left () b_total`, ""},
		{`a_total / on (service) group_left () b_total`, `label "service"`},
		{`sum by (cdn) (a_total) / on () group_left () sum (a_total)`, ""},
		{`a_total and on () c_seconds`, ""},
		{`a_total and c_seconds`, "no series can match"},
		{`label_replace(b_total, "cdn", "x", "", "") / a_total`, ""},
		{`x:y:z`, `no series "x:y:z"`},
	} {
		e, err := newParser().ParseExpr(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		c := &checker{known: known}
		c.labels(e)
		got := strings.Join(c.errs, "; ")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: errors %q, want %q", tc.expr, got, tc.want)
		}
	}
	// A legend label the query does not carry.
	if errs := check([]query{{where: "q", expr: `sum by (cdn) (a_total)`, legend: "{{instance}}"}}, known); len(errs) != 1 {
		t.Errorf("legend {{instance}} on sum by (cdn): %q", errs)
	}
}

// TestSeriesExist: every series and label the rules and dashboards use is
// one a real cdnpilot process exports. It starts every role in one
// process (embedded broker, in-memory store), makes each lazily created
// series appear (a DNS query, HTTP steering requests, health probes), and
// reads the registry.
func TestSeriesExist(t *testing.T) {
	qs := queries(t)
	want := selectorNames(t, qs)
	target := targetLabels(t)

	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	defer health.Close()
	cfg := config.Default()
	cfg.HTTPAddr, cfg.DNSAddr, cfg.Demo.Viewers = "127.0.0.1:0", "127.0.0.1:0", 0
	cfg.Admin.Token = "monitoring-test-admin-token-0123456789"
	// A limit nobody reaches, so the rate limiter and its series exist.
	cfg.DNS.RateLimit.ResponsesPerSecond = 1 << 20
	cfg.Steering.Probe.Interval = config.Duration(50 * time.Millisecond)
	cfg.Steering.Probe.Timeout = config.Duration(40 * time.Millisecond)
	for i := range cfg.CDNs {
		cfg.CDNs[i].HealthURL = health.URL + "/health"
	}
	a, err := app.New(t.Context(), cfg, app.Roles{Ingest: true, Consume: true, Score: true, Steer: true, Admin: true},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	client := &http.Client{
		Timeout:       2 * time.Second,
		Transport:     &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer func() {
		client.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Stopping the app before its override follower has read the topic
	// makes Run fail with the cancelled start-up read; wait for it.
	select {
	case <-a.Overrides().Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the override follower never read the overrides topic")
	}

	base := "http://" + a.HTTPAddr()
	var known map[string]labelSet
	missing := want
	for deadline := time.Now().Add(15 * time.Second); len(missing) > 0 && time.Now().Before(deadline); {
		exercise(t, client, base, a.DNSAddr())
		families, err := a.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		known = exported(families, target)
		known["up"] = target // Prometheus' own series for every target
		missing = slices.DeleteFunc(slices.Clone(want), func(n string) bool { return known[n] != nil })
		if len(missing) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, n := range missing {
		t.Errorf("cdnpilot exports no series %s", n)
	}
	for _, e := range check(qs, known) {
		t.Error(e)
	}
}

// exercise makes the series that exist only once used: a DNS answer,
// a 302 and a content steering answer that demotes a pathway.
func exercise(t *testing.T, client *http.Client, base, dnsAddr string) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion("vod.demo.cdnpilot.test.", mdns.TypeA)
	dc := &mdns.Client{Timeout: time.Second}
	if _, _, err := dc.Exchange(m, dnsAddr); err != nil {
		t.Logf("dns: %v", err)
	}
	for _, path := range []string{
		"/r/vod/seg-1.ts",
		"/steer/vod?ladder_min=1000000&_HLS_pathway=cdn-a&_HLS_throughput=1", // too slow: demoted
	} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
