package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/cdnpilot/cdnpilot/internal/config"
)

const (
	repoRoot      = "../.."
	baseDir       = "base"
	imageName     = "ghcr.io/cdnpilot/cdnpilot"
	containerName = "cdnpilot"
	configMapName = "cdnpilot-config"
	adapterRules  = "base/prometheus-adapter-rules.yaml"
	roleLabel     = "app.kubernetes.io/component"
)

// roles are the long-running subcommands, each its own Deployment.
var roles = []string{"ingest", "consume", "score", "steer", "admin"}

// dnsRoles take --dns-addr: cmd/cdnpilot/roles.go registers it for the
// roles that run app.Roles.Steer.
var dnsRoles = map[string]bool{"steer": true}

// autoscaled roles have an HPA; exposed roles a Service on their HTTP port.
var (
	autoscaled = []string{"ingest", "steer"}
	exposed    = []string{"ingest", "steer", "admin"}
)

// ---- decoding ----

// kinds are the Kubernetes objects the manifests may hold, by
// apiVersion/kind. Anything else is an error.
var kinds = map[string]func() runtime.Object{
	"apps/v1/Deployment":                     func() runtime.Object { return &appsv1.Deployment{} },
	"v1/Service":                             func() runtime.Object { return &corev1.Service{} },
	"v1/ConfigMap":                           func() runtime.Object { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() runtime.Object { return &corev1.Secret{} },
	"v1/Namespace":                           func() runtime.Object { return &corev1.Namespace{} },
	"batch/v1/Job":                           func() runtime.Object { return &batchv1.Job{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":          func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
}

// decodeObject decodes one YAML document strictly (unknown and duplicate
// fields are errors) into its typed Kubernetes object.
func decodeObject(doc []byte) (runtime.Object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	mk, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q (apiVersion %q)", tm.Kind, tm.APIVersion)
	}
	obj := mk()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if nameOf(obj) == "" {
		return nil, fmt.Errorf("%s without metadata.name", tm.Kind)
	}
	return obj, nil
}

func nameOf(o runtime.Object) string { return o.(metav1.Object).GetName() }
func kindOf(o runtime.Object) string { return o.GetObjectKind().GroupVersionKind().Kind }

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a multi-document YAML file, dropping documents that
// hold only comments.
func splitDocs(data []byte) [][]byte {
	var out [][]byte
	for _, d := range docSep.Split(string(data), -1) {
		for _, line := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, []byte(d))
				break
			}
		}
	}
	return out
}

// object is a decoded manifest and where it came from.
type object struct {
	src string
	obj runtime.Object
}

func decodeFile(path string) ([]object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	docs := splitDocs(data)
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no YAML document", path)
	}
	var out []object
	for i, d := range docs {
		o, err := decodeObject(d)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", path, i+1, err)
		}
		out = append(out, object{src: fmt.Sprintf("%s#%d", path, i+1), obj: o})
	}
	return out, nil
}

// ---- a small kustomize ----

// kustomization is the part of kustomize's Kustomization these manifests
// use. It is decoded strictly, so a field the build below does not
// implement is an error, never silently ignored.
type kustomization struct {
	APIVersion         string          `json:"apiVersion"`
	Kind               string          `json:"kind"`
	Namespace          string          `json:"namespace,omitempty"`
	Resources          []string        `json:"resources,omitempty"`
	Images             []kustImage     `json:"images,omitempty"`
	Replicas           []kustReplica   `json:"replicas,omitempty"`
	Patches            []kustPatch     `json:"patches,omitempty"`
	ConfigMapGenerator []kustGenerator `json:"configMapGenerator,omitempty"`
}

type kustImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

type kustReplica struct {
	Name  string `json:"name"`
	Count int32  `json:"count"`
}

// kustPatch is a strategic merge patch file; its kind and name pick the
// target.
type kustPatch struct {
	Path string `json:"path"`
}

type kustGenerator struct {
	Name     string          `json:"name"`
	Behavior string          `json:"behavior,omitempty"`
	Files    []string        `json:"files,omitempty"`
	Options  *kustGenOptions `json:"options,omitempty"`
}

type kustGenOptions struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// build is a kustomization's output: its objects after every layer's
// patches, and the generated ConfigMaps as name -> key -> source file.
type build struct {
	dir       string
	objects   []object
	configs   map[string]map[string]string
	namespace string
}

func readKustomization(dir string) (kustomization, error) {
	var k kustomization
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return k, err
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return k, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return k, fmt.Errorf("%s/kustomization.yaml: apiVersion/kind %s/%s, want kustomize.config.k8s.io/v1beta1/Kustomization", dir, k.APIVersion, k.Kind)
	}
	return k, nil
}

// kustomize builds dir the way `kubectl kustomize` does, for the features
// kustomization declares.
func kustomize(dir string) (*build, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	b := &build{dir: dir, configs: map[string]map[string]string{}}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", dir, r, err)
		}
		if st.IsDir() {
			sub, err := kustomize(p)
			if err != nil {
				return nil, err
			}
			b.objects = append(b.objects, sub.objects...)
			for name, files := range sub.configs {
				if _, dup := b.configs[name]; dup {
					return nil, fmt.Errorf("%s: ConfigMap %s generated twice", dir, name)
				}
				b.configs[name] = files
			}
			continue
		}
		objs, err := decodeFile(p)
		if err != nil {
			return nil, err
		}
		b.objects = append(b.objects, objs...)
	}
	for _, g := range k.ConfigMapGenerator {
		files := map[string]string{}
		for _, f := range g.Files {
			if strings.Contains(f, "=") {
				return nil, fmt.Errorf("%s: configMapGenerator %s: key=path is not supported by these checks", dir, g.Name)
			}
			p := filepath.Join(dir, f)
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("%s: configMapGenerator %s: %w", dir, g.Name, err)
			}
			files[filepath.Base(f)] = p
		}
		prev, exists := b.configs[g.Name]
		switch g.Behavior {
		case "", "create":
			if exists {
				return nil, fmt.Errorf("%s: configMapGenerator %s exists already: use behavior merge or replace", dir, g.Name)
			}
			b.configs[g.Name] = files
		case "replace":
			if !exists {
				return nil, fmt.Errorf("%s: configMapGenerator %s replaces nothing", dir, g.Name)
			}
			b.configs[g.Name] = files
		case "merge":
			if !exists {
				return nil, fmt.Errorf("%s: configMapGenerator %s merges into nothing", dir, g.Name)
			}
			for key, p := range files {
				prev[key] = p
			}
		default:
			return nil, fmt.Errorf("%s: configMapGenerator %s: behavior %q", dir, g.Name, g.Behavior)
		}
	}
	for _, p := range k.Patches {
		if err := b.patch(filepath.Join(dir, p.Path)); err != nil {
			return nil, fmt.Errorf("%s: patch %s: %w", dir, p.Path, err)
		}
	}
	for _, r := range k.Replicas {
		d, ok := b.find("Deployment", r.Name).(*appsv1.Deployment)
		if !ok {
			return nil, fmt.Errorf("%s: replicas: no Deployment %s", dir, r.Name)
		}
		d.Spec.Replicas = &r.Count
	}
	for _, img := range k.Images {
		if n := b.retag(img); n == 0 {
			return nil, fmt.Errorf("%s: images: no container runs %s", dir, img.Name)
		}
	}
	if k.Namespace != "" {
		b.namespace = k.Namespace
		for _, o := range b.objects {
			if kindOf(o.obj) != "Namespace" {
				o.obj.(metav1.Object).SetNamespace(k.Namespace)
			}
		}
	}
	return b, nil
}

func (b *build) find(kind, name string) runtime.Object {
	for _, o := range b.objects {
		if kindOf(o.obj) == kind && nameOf(o.obj) == name {
			return o.obj
		}
	}
	return nil
}

// patch applies every document of a strategic merge patch file to the
// object of the same kind and name.
func (b *build) patch(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	docs := splitDocs(data)
	if len(docs) == 0 {
		return errors.New("no YAML document")
	}
	for i, doc := range docs {
		p, err := decodeObject(doc) // strict: a misspelled field fails here
		if err != nil {
			return fmt.Errorf("document %d: %w", i+1, err)
		}
		idx := slices.IndexFunc(b.objects, func(o object) bool {
			return kindOf(o.obj) == kindOf(p) && nameOf(o.obj) == nameOf(p)
		})
		if idx < 0 {
			return fmt.Errorf("document %d: no %s %s to patch", i+1, kindOf(p), nameOf(p))
		}
		var orig, patch any
		oj, err := json.Marshal(b.objects[idx].obj)
		if err != nil {
			return err
		}
		pj, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(oj, &orig); err != nil {
			return err
		}
		if err := json.Unmarshal(pj, &patch); err != nil {
			return err
		}
		merged, err := json.Marshal(mergePatch(orig, patch))
		if err != nil {
			return err
		}
		out := kinds[b.objects[idx].obj.GetObjectKind().GroupVersionKind().GroupVersion().String()+"/"+kindOf(p)]()
		dec := json.NewDecoder(bytes.NewReader(merged))
		dec.DisallowUnknownFields()
		if err := dec.Decode(out); err != nil {
			return fmt.Errorf("document %d: patched %s: %w", i+1, kindOf(p), err)
		}
		b.objects[idx] = object{src: b.objects[idx].src + " patched by " + path, obj: out}
	}
	return nil
}

// mergePatch is a strategic merge patch for what overlays patch: maps
// merge key by key, null deletes, lists of objects that all have a name
// (containers, env, volumes) merge element by element by name, and any
// other list is replaced.
func mergePatch(orig, patch any) any {
	switch p := patch.(type) {
	case map[string]any:
		o, ok := orig.(map[string]any)
		if !ok {
			o = map[string]any{}
		}
		out := make(map[string]any, len(o))
		for k, v := range o {
			out[k] = v
		}
		for k, v := range p {
			if v == nil {
				delete(out, k)
				continue
			}
			out[k] = mergePatch(o[k], v)
		}
		return out
	case []any:
		o, ok := orig.([]any)
		if !ok || !allNamed(o) || !allNamed(p) {
			return p
		}
		out := slices.Clone(o)
		for _, pe := range p {
			name := pe.(map[string]any)["name"]
			i := slices.IndexFunc(out, func(oe any) bool { return oe.(map[string]any)["name"] == name })
			if i < 0 {
				out = append(out, pe)
				continue
			}
			out[i] = mergePatch(out[i], pe)
		}
		return out
	default:
		return patch
	}
}

func allNamed(l []any) bool {
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

// retag applies an images entry; it returns how many containers it changed.
func (b *build) retag(img kustImage) int {
	n := 0
	set := func(cs []corev1.Container) {
		for i := range cs {
			name, _, _ := strings.Cut(cs[i].Image, "@")
			if j := strings.LastIndex(name, ":"); j > strings.LastIndex(name, "/") {
				name = name[:j]
			}
			if name != img.Name {
				continue
			}
			n++
			if img.NewName != "" {
				name = img.NewName
			}
			switch {
			case img.Digest != "":
				cs[i].Image = name + "@" + img.Digest
			case img.NewTag != "":
				cs[i].Image = name + ":" + img.NewTag
			default:
				cs[i].Image = name
			}
		}
	}
	for _, o := range b.objects {
		if spec := podSpecOf(o.obj); spec != nil {
			set(spec.InitContainers)
			set(spec.Containers)
		}
	}
	return n
}

func podSpecOf(o runtime.Object) *corev1.PodSpec {
	switch v := o.(type) {
	case *appsv1.Deployment:
		return &v.Spec.Template.Spec
	case *batchv1.Job:
		return &v.Spec.Template.Spec
	}
	return nil
}

func (b *build) clone() *build {
	c := &build{dir: b.dir, namespace: b.namespace, configs: map[string]map[string]string{}}
	for _, o := range b.objects {
		c.objects = append(c.objects, object{src: o.src, obj: o.obj.DeepCopyObject()})
	}
	for name, files := range b.configs {
		c.configs[name] = map[string]string{}
		for k, v := range files {
			c.configs[name][k] = v
		}
	}
	return c
}

func all[T runtime.Object](b *build) []T {
	var out []T
	for _, o := range b.objects {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// ---- what the repository says ----

// facts are what the manifests are checked against, read from the repo.
type facts struct {
	commands map[string]bool   // cmd/cdnpilot's command table
	flags    map[string]bool   // flags every role takes -> is a bool flag
	dnsFlags map[string]bool   // flags only the DNS-serving roles take
	counters map[string]bool   // cdnpilot_* names quoted in non-test Go source
	adapter  map[string]string // custom metric -> the counter it is the rate of
}

var (
	factsOnce sync.Once
	factsVal  *facts
	factsErr  error
)

func repoFacts(t *testing.T) *facts {
	t.Helper()
	factsOnce.Do(func() { factsVal, factsErr = readFacts() })
	if factsErr != nil {
		t.Fatal(factsErr)
	}
	return factsVal
}

func readFacts() (*facts, error) {
	f := &facts{}
	var err error
	if f.commands, err = commandTable(filepath.Join(repoRoot, "cmd/cdnpilot/main.go")); err != nil {
		return nil, err
	}
	flagsFile := filepath.Join(repoRoot, "cmd/cdnpilot/flags.go")
	if f.flags, err = registeredFlags(flagsFile, "register"); err != nil {
		return nil, err
	}
	if f.dnsFlags, err = registeredFlags(flagsFile, "registerDNS"); err != nil {
		return nil, err
	}
	if f.counters, err = metricNames(repoRoot); err != nil {
		return nil, err
	}
	if f.adapter, err = adapterMetrics(adapterRules); err != nil {
		return nil, err
	}
	return f, nil
}

// commandTable reads the keys of the map literal that commands() returns.
func commandTable(path string) (map[string]bool, error) {
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, d := range file.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "commands" || fn.Recv != nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if _, isMap := lit.Type.(*ast.MapType); !isMap {
				return true
			}
			for _, e := range lit.Elts {
				if kv, ok := e.(*ast.KeyValueExpr); ok {
					if s, ok := stringLit(kv.Key); ok {
						out[s] = true
					}
				}
			}
			return false
		})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no command table found in func commands", path)
	}
	return out, nil
}

// registeredFlags reads the flag names that method registers with
// fs.XxxVar(&v, "name", ...): name -> whether it is a bool flag.
func registeredFlags(path, method string) (map[string]bool, error) {
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, d := range file.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != method || fn.Recv == nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Var") {
				return true
			}
			if s, ok := stringLit(call.Args[1]); ok {
				out[s] = sel.Sel.Name == "BoolVar"
			}
			return true
		})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no flags registered in method %s", path, method)
	}
	return out, nil
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var quotedMetric = regexp.MustCompile(`"(cdnpilot_[a-z0-9_]+)"`)

// metricNames collects the cdnpilot_* string literals of the non-test Go
// source: the names metrics are registered under.
func metricNames(root string) (map[string]bool, error) {
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "deploy":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range quotedMetric.FindAllSubmatch(data, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	return out, err
}

// adapterConfig is prometheus-adapter's rule file, as much as these rules use.
type adapterConfig struct {
	Rules []struct {
		SeriesQuery string `json:"seriesQuery"`
		Resources   struct {
			Overrides map[string]struct {
				Resource string `json:"resource"`
			} `json:"overrides"`
		} `json:"resources"`
		Name struct {
			Matches string `json:"matches"`
			As      string `json:"as"`
		} `json:"name"`
		MetricsQuery string `json:"metricsQuery"`
	} `json:"rules"`
}

// adapterMetrics reads the prometheus-adapter rules: custom metric name ->
// the series it is computed from.
func adapterMetrics(path string) (map[string]string, error) {
	objs, err := decodeFile(path)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%s: want one ConfigMap", path)
	}
	cm, ok := objs[0].obj.(*corev1.ConfigMap)
	if !ok {
		return nil, fmt.Errorf("%s: not a ConfigMap", path)
	}
	var cfg adapterConfig
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		return nil, fmt.Errorf("%s: config.yaml: %w", path, err)
	}
	out := map[string]string{}
	for i, r := range cfg.Rules {
		series, _, _ := strings.Cut(r.SeriesQuery, "{")
		re, err := regexp.Compile(r.Name.Matches)
		if err != nil || !re.MatchString(series) {
			return nil, fmt.Errorf("%s: rule %d: name.matches %q does not match %q", path, i, r.Name.Matches, series)
		}
		name := re.ReplaceAllString(series, r.Name.As)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s: rule %d: %s defined twice", path, i, name)
		}
		for _, l := range []string{"namespace", "pod"} {
			if r.Resources.Overrides[l].Resource != l {
				return nil, fmt.Errorf("%s: rule %d: label %s must map to resource %s", path, i, l, l)
			}
		}
		if !strings.Contains(r.MetricsQuery, "rate(<<.Series>>{<<.LabelMatchers>>}") || !strings.Contains(r.MetricsQuery, "by (<<.GroupBy>>)") {
			return nil, fmt.Errorf("%s: rule %d: metricsQuery %q is not a per-pod rate", path, i, r.MetricsQuery)
		}
		out[name] = series
	}
	return out, nil
}

// ---- checks ----

// problems collects every finding of a check run.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// check runs every check on a build and returns what it found.
func check(b *build, f *facts) problems {
	var p problems
	c := checker{b: b, f: f, p: &p}
	c.deployments()
	c.jobs()
	c.services()
	c.hpas()
	c.pdbs()
	c.configs()
	c.placeholders()
	sort.Strings(p)
	return p
}

type checker struct {
	b *build
	f *facts
	p *problems
}

func (c checker) secrets() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, s := range all[*corev1.Secret](c.b) {
		keys := map[string]bool{}
		for k := range s.Data {
			keys[k] = true
		}
		for k := range s.StringData {
			keys[k] = true
		}
		out[s.Name] = keys
	}
	return out
}

func roleOf(d *appsv1.Deployment) string { return d.Spec.Template.Labels[roleLabel] }

func (c checker) deployments() {
	deps := all[*appsv1.Deployment](c.b)
	for _, role := range roles {
		if !c.f.commands[role] {
			c.p.add("role %s: not a cdnpilot subcommand (cmd/cdnpilot/main.go)", role)
		}
		if !slices.ContainsFunc(deps, func(d *appsv1.Deployment) bool { return roleOf(d) == role }) {
			c.p.add("role %s: no Deployment", role)
		}
	}
	hpaTargets := map[string]bool{}
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](c.b) {
		hpaTargets[h.Spec.ScaleTargetRef.Name] = true
	}
	var scorers []string
	for _, d := range deps {
		where := "Deployment " + d.Name
		role := roleOf(d)
		if !slices.Contains(roles, role) {
			c.p.add("%s: label %s=%q is not one of the roles %v", where, roleLabel, role, roles)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() {
			c.p.add("%s: bad or empty selector: %v", where, err)
		} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			c.p.add("%s: selector does not match its pod labels", where)
		}
		for _, other := range deps {
			if other != d && sel != nil && !sel.Empty() && sel.Matches(labels.Set(other.Spec.Template.Labels)) {
				c.p.add("%s: selector also matches the pods of Deployment %s", where, other.Name)
			}
		}
		if hpaTargets[d.Name] && d.Spec.Replicas != nil {
			c.p.add("%s: sets replicas but an HPA scales it (each apply would reset the HPA's count)", where)
		}
		cfg := c.pod(where, role, d.Spec.Template, true)
		if role == "score" {
			scorers = append(scorers, d.Name)
			c.scorer(where, d, cfg, hpaTargets[d.Name])
		}
	}
	if len(scorers) > 1 {
		c.p.add("role score: %d Deployments %v: the scorers are one Deployment, one consumer group on one config (docs/ARCHITECTURE.md, Scorer group)", len(scorers), scorers)
	}
	for _, role := range autoscaled {
		found := false
		for _, d := range deps {
			found = found || (roleOf(d) == role && hpaTargets[d.Name])
		}
		if !found {
			c.p.add("role %s: no HPA targets its Deployment", role)
		}
	}
}

// scorer checks the score Deployment: a group of 2 up to kafka.partitions
// members, rolled and scaled one member at a time.
func (c checker) scorer(where string, d *appsv1.Deployment, cfg *config.Config, autoscaled bool) {
	n := int32(1) // the API server's default
	if d.Spec.Replicas != nil {
		n = *d.Spec.Replicas
	}
	if n < 2 {
		c.p.add("%s: replicas %d: the scorer group needs at least 2 members, so that a dead one's partitions move to another", where, n)
	}
	if cfg != nil && int(n) > cfg.Kafka.Partitions {
		c.p.add("%s: replicas %d, more than kafka.partitions (%d): a member beyond the beacon partitions gets none and sits idle", where, n, cfg.Kafka.Partitions)
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.p.add("%s: the Recreate strategy stops every member at once, and with them the snapshots; roll one member at a time", where)
	}
	if autoscaled {
		c.p.add("%s: an HPA scales the scorer group: every change in its size rebalances the group and rebuilds every member's windows", where)
	}
}

func (c checker) jobs() {
	found := false
	for _, j := range all[*batchv1.Job](c.b) {
		where := "Job " + j.Name
		rp := j.Spec.Template.Spec.RestartPolicy
		if rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
			c.p.add("%s: restartPolicy %q", where, rp)
		}
		if j.Spec.BackoffLimit == nil || j.Spec.ActiveDeadlineSeconds == nil {
			c.p.add("%s: set backoffLimit and activeDeadlineSeconds", where)
		}
		c.pod(where, "migrate", j.Spec.Template, false)
		found = true
	}
	if !found {
		c.p.add("no Job runs migrate")
	}
}

// pod checks a pod template that runs `cdnpilot <role>`; long-running
// ones also need probes and metrics. It returns the config the pod loads.
func (c checker) pod(where, role string, tpl corev1.PodTemplateSpec, long bool) *config.Config {
	spec := tpl.Spec
	if len(spec.Containers) != 1 || spec.Containers[0].Name != containerName {
		c.p.add("%s: want exactly one container, named %s", where, containerName)
		return nil
	}
	ctr := spec.Containers[0]
	if !strings.HasPrefix(ctr.Image, imageName+":") && !strings.HasPrefix(ctr.Image, imageName+"@") {
		c.p.add("%s: image %q is not %s:TAG", where, ctr.Image, imageName)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		c.p.add("%s: automountServiceAccountToken should be false (cdnpilot never calls the API)", where)
	}

	// The command line: the image's entrypoint is the binary.
	if len(ctr.Command) > 0 {
		c.p.add("%s: command %v set: the image's entrypoint is cdnpilot, pass the subcommand in args", where, ctr.Command)
	}
	if len(ctr.Args) == 0 {
		c.p.add("%s: no args: want a cdnpilot subcommand", where)
		return nil
	}
	if sub := ctr.Args[0]; !c.f.commands[sub] {
		c.p.add("%s: %q is not a cdnpilot subcommand (cmd/cdnpilot/main.go)", where, sub)
	} else if sub != role {
		c.p.add("%s: runs %q, its role label says %q", where, sub, role)
	}
	flags := map[string]string{}
	for i := 1; i < len(ctr.Args); i++ {
		a := ctr.Args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			c.p.add("%s: stray argument %q", where, a)
			continue
		}
		isBool, ok := c.f.flags[name]
		if !ok && dnsRoles[role] {
			isBool, ok = c.f.dnsFlags[name]
		}
		if !ok {
			c.p.add("%s: flag %s is not one `cdnpilot %s` takes (cmd/cdnpilot/flags.go)", where, a, role)
			continue
		}
		if !isBool && !hasVal {
			if i+1 >= len(ctr.Args) {
				c.p.add("%s: flag %s without a value", where, a)
				continue
			}
			i++
			val = ctr.Args[i]
		}
		flags[name] = val
	}

	ports := map[string]corev1.ContainerPort{}
	for _, p := range ctr.Ports {
		if _, dup := ports[p.Name]; dup || p.Name == "" {
			c.p.add("%s: container port %d needs a unique name", where, p.ContainerPort)
		}
		ports[p.Name] = p
		if p.ContainerPort < 1024 {
			c.p.add("%s: port %d is privileged; the container runs without NET_BIND_SERVICE", where, p.ContainerPort)
		}
	}
	if long {
		http, ok := ports["http"]
		if !ok || protocolOf(http.Protocol) != corev1.ProtocolTCP {
			c.p.add("%s: no TCP container port named http", where)
		}
		c.listen(where, "http-addr", flags, http.ContainerPort)
		if dnsRoles[role] {
			udp, tcp := ports["dns-udp"], ports["dns-tcp"]
			if protocolOf(udp.Protocol) != corev1.ProtocolUDP || protocolOf(tcp.Protocol) != corev1.ProtocolTCP || udp.ContainerPort != tcp.ContainerPort || udp.ContainerPort == 0 {
				c.p.add("%s: want container ports dns-udp (UDP) and dns-tcp (TCP) on one port", where)
			}
			c.listen(where, "dns-addr", flags, udp.ContainerPort)
		}
		c.probe(where, "liveness", ctr.LivenessProbe, "/healthz", ctr.Ports)
		c.probe(where, "readiness", ctr.ReadinessProbe, "/readyz", ctr.Ports)
		if ctr.StartupProbe != nil {
			c.probe(where, "startup", ctr.StartupProbe, "/healthz", ctr.Ports)
		}
		a := tpl.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(int(http.ContainerPort)) {
			c.p.add("%s: prometheus.io annotations must scrape /metrics on the http port (%d)", where, http.ContainerPort)
		}
		if len(spec.TopologySpreadConstraints) == 0 {
			c.p.add("%s: no topologySpreadConstraints", where)
		}
		for _, tsc := range spec.TopologySpreadConstraints {
			sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(tpl.Labels)) {
				c.p.add("%s: topology spread over %s does not select its own pods", where, tsc.TopologyKey)
			}
		}
	}

	// Resources: requests and limits for CPU and memory, requests <= limits.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := ctr.Resources.Requests[r]
		lim, okLim := ctr.Resources.Limits[r]
		switch {
		case !okReq || !okLim:
			c.p.add("%s: %s requests and limits must both be set", where, r)
		case req.Cmp(lim) > 0:
			c.p.add("%s: %s request %s is above the limit %s", where, r, req.String(), lim.String())
		}
	}

	// Security: non-root, read-only root filesystem, no capabilities.
	psc, sc := spec.SecurityContext, ctr.SecurityContext
	nonRoot := (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot) || (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
	if !nonRoot {
		c.p.add("%s: runAsNonRoot is not true", where)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.p.add("%s: want the RuntimeDefault seccomp profile", where)
	}
	switch {
	case sc == nil:
		c.p.add("%s: no container securityContext", where)
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			c.p.add("%s: readOnlyRootFilesystem is not true", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			c.p.add("%s: allowPrivilegeEscalation is not false", where)
		}
		if sc.Privileged != nil && *sc.Privileged {
			c.p.add("%s: privileged", where)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			c.p.add("%s: capabilities must drop ALL and add none", where)
		}
	}

	// Secrets: every reference names an existing Secret and key.
	secrets := c.secrets()
	for _, e := range ctr.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if !secrets[ref.Name][ref.Key] {
			c.p.add("%s: env %s: Secret %s has no key %s", where, e.Name, ref.Name, ref.Key)
		}
	}
	if len(ctr.EnvFrom) > 0 {
		c.p.add("%s: envFrom hands the pod every key; name the ones it needs", where)
	}

	// The config file: --config names a key of the generated ConfigMap
	// through its mount.
	return c.configOf(where, flags["config"], spec, ctr)
}

// listen checks that --flag is 0.0.0.0:port for a declared container port.
func (c checker) listen(where, flag string, flags map[string]string, port int32) {
	host, p, err := net.SplitHostPort(flags[flag])
	if err != nil || host != "0.0.0.0" || p != strconv.Itoa(int(port)) || port == 0 {
		c.p.add("%s: --%s %q must be 0.0.0.0:%d, the container port", where, flag, flags[flag], port)
	}
}

func (c checker) probe(where, kind string, pr *corev1.Probe, path string, ports []corev1.ContainerPort) {
	if pr == nil || pr.HTTPGet == nil {
		c.p.add("%s: no HTTP %s probe", where, kind)
		return
	}
	if pr.HTTPGet.Path != path {
		c.p.add("%s: %s probe on %q, want %s", where, kind, pr.HTTPGet.Path, path)
	}
	if p, ok := resolvePort(pr.HTTPGet.Port, ports); !ok || protocolOf(p.Protocol) != corev1.ProtocolTCP {
		c.p.add("%s: %s probe port %s is not a declared TCP container port", where, kind, pr.HTTPGet.Port.String())
	}
}

func resolvePort(ref intstr.IntOrString, ports []corev1.ContainerPort) (corev1.ContainerPort, bool) {
	for _, p := range ports {
		if (ref.Type == intstr.String && ref.StrVal == p.Name) || (ref.Type == intstr.Int && ref.IntVal == p.ContainerPort) {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func (c checker) configOf(where, path string, spec corev1.PodSpec, ctr corev1.Container) *config.Config {
	if path == "" {
		c.p.add("%s: no --config", where)
		return nil
	}
	for _, m := range ctr.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		vi := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if vi < 0 || spec.Volumes[vi].ConfigMap == nil {
			c.p.add("%s: --config %s is on volume %s, which is not a ConfigMap", where, path, m.Name)
			return nil
		}
		files, ok := c.b.configs[spec.Volumes[vi].ConfigMap.Name]
		if !ok {
			c.p.add("%s: volume %s: no generated ConfigMap %s", where, m.Name, spec.Volumes[vi].ConfigMap.Name)
			return nil
		}
		file, ok := files[rel]
		if !ok {
			c.p.add("%s: --config %s: ConfigMap %s has no key %s", where, path, spec.Volumes[vi].ConfigMap.Name, rel)
			return nil
		}
		cfg, err := loadConfig(file)
		if err != nil {
			c.p.add("%s: %v", where, err)
			return nil
		}
		return &cfg
	}
	c.p.add("%s: --config %s is on no volume mount", where, path)
	return nil
}

func (c checker) services() {
	deps := all[*appsv1.Deployment](c.b)
	served := map[string]bool{} // role -> has a Service on its http port
	dns := map[corev1.Protocol]bool{}
	for _, s := range all[*corev1.Service](c.b) {
		where := "Service " + s.Name
		if len(s.Spec.Selector) == 0 {
			c.p.add("%s: no selector", where)
			continue
		}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		var matched []*appsv1.Deployment
		for _, d := range deps {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, d)
			}
		}
		if len(matched) == 0 {
			c.p.add("%s: selects no Deployment's pods", where)
		}
		for _, sp := range s.Spec.Ports {
			for _, d := range matched {
				var ports []corev1.ContainerPort
				for _, ctr := range d.Spec.Template.Spec.Containers {
					ports = append(ports, ctr.Ports...)
				}
				cp, ok := resolvePort(sp.TargetPort, ports)
				if !ok || protocolOf(cp.Protocol) != protocolOf(sp.Protocol) {
					c.p.add("%s: port %s targetPort %s is no %s container port of Deployment %s", where, sp.Name, sp.TargetPort.String(), protocolOf(sp.Protocol), d.Name)
					continue
				}
				if cp.Name == "http" && s.Spec.ClusterIP != corev1.ClusterIPNone {
					served[roleOf(d)] = true
				}
				if roleOf(d) == "steer" && sp.Port == 53 && strings.HasPrefix(cp.Name, "dns") {
					dns[protocolOf(sp.Protocol)] = true
				}
			}
		}
	}
	for _, role := range exposed {
		if !served[role] {
			c.p.add("role %s: no Service routes to its http port", role)
		}
	}
	if !dns[corev1.ProtocolUDP] || !dns[corev1.ProtocolTCP] {
		c.p.add("steer: want a Service with port 53/UDP and 53/TCP to the DNS container ports")
	}
}

func (c checker) hpas() {
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](c.b) {
		where := "HorizontalPodAutoscaler " + h.Name
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || c.b.find("Deployment", ref.Name) == nil {
			c.p.add("%s: targets %s %s %s, which is not a Deployment here", where, ref.APIVersion, ref.Kind, ref.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			c.p.add("%s: want 2 <= minReplicas <= maxReplicas", where)
		}
		cpu, pods := false, 0
		for _, m := range h.Spec.Metrics {
			switch m.Type {
			case autoscalingv2.ResourceMetricSourceType:
				cpu = cpu || (m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.AverageUtilization != nil)
			case autoscalingv2.PodsMetricSourceType:
				if m.Pods == nil || m.Pods.Target.AverageValue == nil {
					c.p.add("%s: a Pods metric needs an averageValue target", where)
					continue
				}
				pods++
				name := m.Pods.Metric.Name
				series, ok := c.f.adapter[name]
				if !ok {
					c.p.add("%s: Pods metric %s comes from no rule of %s", where, name, adapterRules)
				} else if !c.f.counters[series] {
					c.p.add("%s: Pods metric %s is the rate of %s, which cdnpilot does not export", where, name, series)
				}
			}
		}
		if !cpu {
			c.p.add("%s: no CPU utilization metric", where)
		}
		if pods == 0 {
			c.p.add("%s: no Pods metric", where)
		}
	}
}

func (c checker) pdbs() {
	pdbs := all[*policyv1.PodDisruptionBudget](c.b)
	covered := map[string][]string{}
	for _, pdb := range pdbs {
		where := "PodDisruptionBudget " + pdb.Name
		if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
			c.p.add("%s: set exactly one of minAvailable and maxUnavailable", where)
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() {
			c.p.add("%s: bad or empty selector", where)
			continue
		}
		n := 0
		for _, d := range all[*appsv1.Deployment](c.b) {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				covered[d.Name] = append(covered[d.Name], pdb.Name)
				n++
			}
		}
		if n == 0 {
			c.p.add("%s: selects no Deployment's pods", where)
		}
	}
	for _, d := range all[*appsv1.Deployment](c.b) {
		switch n := len(covered[d.Name]); {
		case n == 0:
			c.p.add("Deployment %s: no PodDisruptionBudget selects its pods", d.Name)
		case n > 1:
			// The eviction API refuses pods under more than one budget.
			c.p.add("Deployment %s: more than one PodDisruptionBudget selects its pods: %v", d.Name, covered[d.Name])
		}
	}
}

// configs loads and validates every generated config file; config.yaml, the
// one every role reads, must name a real Kafka and ClickHouse.
func (c checker) configs() {
	files, ok := c.b.configs[configMapName]
	if !ok || files["config.yaml"] == "" {
		c.p.add("no generated ConfigMap %s with a config.yaml", configMapName)
		return
	}
	main, err := loadConfig(files["config.yaml"])
	if err != nil {
		c.p.add("%v", err)
		return
	}
	if main.Kafka.Embedded() || main.ClickHouse.Addr == "" {
		c.p.add("%s: production needs kafka.brokers and clickhouse.addr (the embedded broker and memory store are for the demo)", files["config.yaml"])
	}
	for key, file := range files {
		if key == "config.yaml" {
			continue
		}
		if _, err := loadConfig(file); err != nil {
			c.p.add("%v", err)
		}
	}
}

// placeholders: the Secret's admin token must not be usable, so an
// unedited deploy cannot run with a token published in this repository.
func (c checker) placeholders() {
	for _, s := range all[*corev1.Secret](c.b) {
		tok, ok := s.StringData["CDNPILOT_ADMIN_TOKEN"]
		if !ok {
			continue
		}
		cfg := config.Default()
		if err := cfg.ApplyEnv(func(k string) string {
			if k == "CDNPILOT_ADMIN_TOKEN" {
				return tok
			}
			return ""
		}); err != nil {
			c.p.add("Secret %s: %v", s.Name, err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "CDNPILOT_ADMIN_TOKEN") {
			c.p.add("Secret %s: the CDNPILOT_ADMIN_TOKEN placeholder is a valid token; keep it unusable (real ones come from the secret manager)", s.Name)
		}
	}
}

// loadConfig loads a config file the way every role does, strictly, and
// validates it, without the environment. Results are kept by path: the
// checks load the same few files many times, and a test that needs a
// different file writes it to a new path.
func loadConfig(path string) (config.Config, error) {
	if r, ok := configCache.Load(path); ok {
		r := r.(loaded)
		return r.cfg, r.err
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err == nil {
		if err = cfg.Validate(); err != nil {
			err = fmt.Errorf("%s: %w", path, err)
		}
	}
	configCache.Store(path, loaded{cfg, err})
	return cfg, err
}

type loaded struct {
	cfg config.Config
	err error
}

var configCache sync.Map // path -> loaded

// ---- tests ----

// builds builds every directory under deploy/k8s that holds a
// kustomization.yaml: each is meant for `kubectl apply -k` and checked in
// full.
func builds(t *testing.T) map[string]*build {
	t.Helper()
	out := map[string]*build{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		dir := filepath.Dir(path)
		b, err := kustomize(dir)
		if err != nil {
			return err
		}
		out[dir] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out[baseDir] == nil || len(out) < 2 {
		t.Fatalf("want the base and at least one overlay, found %d kustomizations", len(out))
	}
	return out
}

// TestEveryYAMLDecodes walks deploy/k8s: each kustomization.yaml decodes
// into the kustomization type, each file a ConfigMap is generated from
// loads as a cdnpilot config, and every other YAML document decodes
// strictly into its Kubernetes type.
func TestEveryYAMLDecodes(t *testing.T) {
	generated := map[string]bool{}
	for _, b := range builds(t) {
		for _, files := range b.configs {
			for _, f := range files {
				generated[filepath.Clean(f)] = true
			}
		}
	}
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		n++
		switch {
		case d.Name() == "kustomization.yaml":
			_, err = readKustomization(filepath.Dir(path))
		case generated[filepath.Clean(path)]:
			_, err = loadConfig(path)
		default:
			_, err = decodeFile(path)
		}
		if err != nil {
			t.Error(err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("found %d YAML files under deploy/k8s", n)
	}
}

// TestManifests runs every check on the base and on each overlay as built.
func TestManifests(t *testing.T) {
	f := repoFacts(t)
	for dir, b := range builds(t) {
		t.Run(dir, func(t *testing.T) {
			for _, p := range check(b, f) {
				t.Error(p)
			}
		})
	}
}

// TestOverlays: overlays only patch what the base has, pin the image, set
// a namespace, and leave the base's objects namespace-free.
func TestOverlays(t *testing.T) {
	bs := builds(t)
	for _, o := range all[runtime.Object](bs[baseDir]) {
		if ns := o.(metav1.Object).GetNamespace(); ns != "" {
			t.Errorf("base: %s %s sets namespace %q: overlays choose it", kindOf(o), nameOf(o), ns)
		}
	}
	for dir, b := range bs {
		if dir == baseDir {
			continue
		}
		if b.namespace == "" {
			t.Errorf("%s: no namespace", dir)
		}
		for _, o := range b.objects {
			spec := podSpecOf(o.obj)
			if spec == nil {
				continue
			}
			for _, ctr := range spec.Containers {
				name, digest, _ := strings.Cut(ctr.Image, "@")
				tag := ""
				if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
					tag = name[i+1:]
				}
				if digest == "" && (tag == "" || tag == "latest") {
					t.Errorf("%s: %s %s runs %s: pin a release tag or digest", dir, kindOf(o.obj), nameOf(o.obj), ctr.Image)
				}
			}
		}
	}
}

// TestAdapterRules: every custom metric the rules define is the rate of a
// counter cdnpilot registers, and an HPA uses it.
func TestAdapterRules(t *testing.T) {
	f := repoFacts(t)
	used := map[string]bool{}
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](builds(t)[baseDir]) {
		for _, m := range h.Spec.Metrics {
			if m.Pods != nil {
				used[m.Pods.Metric.Name] = true
			}
		}
	}
	for name, series := range f.adapter {
		if !strings.HasSuffix(series, "_total") || !f.counters[series] {
			t.Errorf("%s: %s is not a counter registered in cdnpilot's Go source", name, series)
		}
		if !used[name] {
			t.Errorf("%s: no HPA uses it", name)
		}
	}
}

// TestChecksCatchBreakage breaks the base one way at a time and expects
// the checks to say so: none of them can pass by accident.
func TestChecksCatchBreakage(t *testing.T) {
	f := repoFacts(t)
	base := builds(t)[baseDir]
	if p := check(base, f); len(p) > 0 {
		t.Fatalf("the base has problems: %v", p)
	}
	dep := func(b *build, name string) *appsv1.Deployment { return b.find("Deployment", name).(*appsv1.Deployment) }
	ctr := func(b *build, name string) *corev1.Container { return &dep(b, name).Spec.Template.Spec.Containers[0] }
	svc := func(b *build, name string) *corev1.Service { return b.find("Service", name).(*corev1.Service) }
	hpa := func(b *build, name string) *autoscalingv2.HorizontalPodAutoscaler {
		return b.find("HorizontalPodAutoscaler", name).(*autoscalingv2.HorizontalPodAutoscaler)
	}
	pdb := func(b *build, name string) *policyv1.PodDisruptionBudget {
		return b.find("PodDisruptionBudget", name).(*policyv1.PodDisruptionBudget)
	}
	one := int32(1)
	// One scorer more than the base's beacon partitions, and the base's
	// config with a single partition.
	baseConfig, err := os.ReadFile(filepath.Join(baseDir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(filepath.Join(baseDir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	many := int32(cfg.Kafka.Partitions + 1)
	fewPartitions := filepath.Join(t.TempDir(), "config.yaml")
	few := strings.Replace(string(baseConfig), fmt.Sprintf("\n  partitions: %d ", cfg.Kafka.Partitions), "\n  partitions: 1 ", 1)
	if err := os.WriteFile(fewPartitions, []byte(few), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(b *build)
		want   string
	}{
		{"readiness path", func(b *build) { ctr(b, "cdnpilot-ingest").ReadinessProbe.HTTPGet.Path = "/ready" }, "readiness probe on"},
		{"no liveness", func(b *build) { ctr(b, "cdnpilot-consume").LivenessProbe = nil }, "no HTTP liveness probe"},
		{"probe port", func(b *build) { ctr(b, "cdnpilot-steer").LivenessProbe.HTTPGet.Port = intstr.FromString("metrics") }, "liveness probe port metrics"},
		{"no limits", func(b *build) { ctr(b, "cdnpilot-admin").Resources.Limits = nil }, "requests and limits must both be set"},
		{"request over limit", func(b *build) {
			ctr(b, "cdnpilot-admin").Resources.Requests[corev1.ResourceCPU] = resource.MustParse("4")
		}, "above the limit"},
		{"unknown subcommand", func(b *build) { ctr(b, "cdnpilot-admin").Args[0] = "serve-admin" }, "not a cdnpilot subcommand"},
		{"wrong subcommand", func(b *build) { ctr(b, "cdnpilot-consume").Args[0] = "ingest" }, "its role label says"},
		{"unknown flag", func(b *build) {
			ctr(b, "cdnpilot-ingest").Args = append(ctr(b, "cdnpilot-ingest").Args, "--dns-addr", "0.0.0.0:8053")
		}, "is not one `cdnpilot ingest` takes"},
		{"http-addr port", func(b *build) {
			a := ctr(b, "cdnpilot-score").Args
			a[slices.Index(a, "--http-addr")+1] = "0.0.0.0:9090"
		}, "--http-addr"},
		{"loopback listen", func(b *build) {
			a := ctr(b, "cdnpilot-steer").Args
			a[slices.Index(a, "--dns-addr")+1] = "127.0.0.1:8053"
		}, "--dns-addr"},
		{"config key", func(b *build) {
			a := ctr(b, "cdnpilot-admin").Args
			a[slices.Index(a, "--config")+1] = "/etc/cdnpilot/prod.yaml"
		}, "has no key prod.yaml"},
		{"one scorer", func(b *build) { dep(b, "cdnpilot-score").Spec.Replicas = &one }, "needs at least 2 members"},
		{"scorer replicas unset", func(b *build) { dep(b, "cdnpilot-score").Spec.Replicas = nil }, "needs at least 2 members"},
		{"scorers beyond the partitions", func(b *build) { dep(b, "cdnpilot-score").Spec.Replicas = &many }, fmt.Sprintf("more than kafka.partitions (%d)", cfg.Kafka.Partitions)},
		{"partitions under the scorers", func(b *build) { b.configs[configMapName]["config.yaml"] = fewPartitions }, "more than kafka.partitions (1)"},
		{"second score Deployment", func(b *build) {
			d := dep(b, "cdnpilot-score").DeepCopy()
			d.Name = "cdnpilot-score-b"
			b.objects = append(b.objects, object{src: "test", obj: d})
		}, "role score: 2 Deployments"},
		{"scorers recreated", func(b *build) {
			dep(b, "cdnpilot-score").Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}, "Recreate strategy stops every member"},
		{"scorers autoscaled", func(b *build) {
			h := hpa(b, "cdnpilot-ingest").DeepCopy()
			h.Name, h.Spec.ScaleTargetRef.Name = "cdnpilot-score", "cdnpilot-score"
			b.objects = append(b.objects, object{src: "test", obj: h})
		}, "an HPA scales the scorer group"},
		{"replicas under an HPA", func(b *build) { dep(b, "cdnpilot-ingest").Spec.Replicas = &one }, "an HPA scales it"},
		{"writable root", func(b *build) { f := false; ctr(b, "cdnpilot-steer").SecurityContext.ReadOnlyRootFilesystem = &f }, "readOnlyRootFilesystem"},
		{"capability", func(b *build) {
			ctr(b, "cdnpilot-steer").SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		}, "drop ALL and add none"},
		{"root", func(b *build) {
			f := false
			dep(b, "cdnpilot-consume").Spec.Template.Spec.SecurityContext.RunAsNonRoot = &f
			ctr(b, "cdnpilot-consume").SecurityContext.RunAsNonRoot = nil
		}, "runAsNonRoot"},
		{"privileged port", func(b *build) { ctr(b, "cdnpilot-steer").Ports[1].ContainerPort = 53 }, "privileged"},
		{"scrape port", func(b *build) { dep(b, "cdnpilot-admin").Spec.Template.Annotations["prometheus.io/port"] = "9090" }, "prometheus.io annotations"},
		{"no spread", func(b *build) { dep(b, "cdnpilot-admin").Spec.Template.Spec.TopologySpreadConstraints = nil }, "no topologySpreadConstraints"},
		{"secret key", func(b *build) { ctr(b, "cdnpilot-admin").Env[1].ValueFrom.SecretKeyRef.Key = "ADMIN_TOKEN" }, "has no key ADMIN_TOKEN"},
		{"service selector", func(b *build) { svc(b, "cdnpilot-ingest").Spec.Selector[roleLabel] = "ingestor" }, "selects no Deployment"},
		{"service targetPort", func(b *build) { svc(b, "cdnpilot-admin").Spec.Ports[0].TargetPort = intstr.FromString("web") }, "targetPort web"},
		{"dns over TCP only", func(b *build) { svc(b, "cdnpilot-steer-dns").Spec.Ports[0].Protocol = corev1.ProtocolTCP }, "53/UDP and 53/TCP"},
		{"dns to the http port", func(b *build) { svc(b, "cdnpilot-steer-dns").Spec.Ports[1].TargetPort = intstr.FromInt32(8080) }, "53/UDP and 53/TCP"},
		{"hpa target", func(b *build) { hpa(b, "cdnpilot-ingest").Spec.ScaleTargetRef.Name = "cdnpilot-ingester" }, "not a Deployment here"},
		{"hpa without cpu", func(b *build) {
			h := hpa(b, "cdnpilot-steer")
			h.Spec.Metrics = slices.DeleteFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool { return m.Type == autoscalingv2.ResourceMetricSourceType })
		}, "no CPU utilization metric"},
		{"hpa without pods metric", func(b *build) {
			h := hpa(b, "cdnpilot-ingest")
			h.Spec.Metrics = slices.DeleteFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool { return m.Type == autoscalingv2.PodsMetricSourceType })
		}, "no Pods metric"},
		{"hpa metric name", func(b *build) {
			for _, m := range hpa(b, "cdnpilot-ingest").Spec.Metrics {
				if m.Pods != nil {
					m.Pods.Metric.Name = "cdnpilot_ingest_requests_per_second"
				}
			}
		}, "comes from no rule"},
		{"no pdb", func(b *build) { pdb(b, "cdnpilot-consume").Spec.Selector.MatchLabels[roleLabel] = "consumer" }, "no PodDisruptionBudget selects"},
		{"two pdbs", func(b *build) {
			pdb(b, "cdnpilot-admin").Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "cdnpilot"}
		}, "more than one PodDisruptionBudget"},
		{"no migrate job", func(b *build) {
			b.objects = slices.DeleteFunc(b.objects, func(o object) bool { return kindOf(o.obj) == "Job" })
		}, "no Job runs migrate"},
		{"secret placeholder usable", func(b *build) {
			b.find("Secret", "cdnpilot-secrets").(*corev1.Secret).StringData["CDNPILOT_ADMIN_TOKEN"] = "0123456789abcdef0123"
		}, "placeholder is a valid token"},
		{"no steer deployment", func(b *build) {
			b.objects = slices.DeleteFunc(b.objects, func(o object) bool { return nameOf(o.obj) == "cdnpilot-steer" && kindOf(o.obj) == "Deployment" })
		}, "role steer: no Deployment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base.clone()
			tt.mutate(b)
			p := check(b, f)
			if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tt.want) }) {
				t.Errorf("want a problem containing %q, got %v", tt.want, p)
			}
		})
	}
}

// TestBuildCatchesBreakage: decoding and building refuse what a real
// `kubectl apply -k` would refuse or silently get wrong.
func TestBuildCatchesBreakage(t *testing.T) {
	baseConfig, err := os.ReadFile("base/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {a: b}
  template:
    metadata:
      labels: {a: b}
    spec:
      containers:
        - name: cdnpilot
          image: ghcr.io/cdnpilot/cdnpilot:v1
`
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [d.yaml]\nconfigMapGenerator:\n  - name: cdnpilot-config\n    files: [config.yaml]\n"
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown field", map[string]string{"d.yaml": strings.Replace(deployment, "  selector:", "  replica: 2\n  selector:", 1)}, `unknown field "replica"`},
		{"unknown nested field", map[string]string{"d.yaml": strings.Replace(deployment, "image:", "imag:", 1)}, `unknown field`},
		{"unknown kind", map[string]string{"d.yaml": strings.Replace(deployment, "kind: Deployment", "kind: DaemonSet", 1)}, `unknown kind "DaemonSet"`},
		{"old api version", map[string]string{"d.yaml": strings.Replace(deployment, "apps/v1", "extensions/v1beta1", 1)}, `unknown kind`},
		{"unknown kustomization field", map[string]string{"kustomization.yaml": kust + "commonLabels: {a: b}\n"}, `unknown field "commonLabels"`},
		{"missing resource", map[string]string{"kustomization.yaml": strings.Replace(kust, "[d.yaml]", "[d.yaml, gone.yaml]", 1)}, "gone.yaml"},
		{"missing patch", map[string]string{"kustomization.yaml": kust + "patches:\n  - path: p.yaml\n"}, "p.yaml"},
		{"patch target", map[string]string{
			"kustomization.yaml": kust + "patches:\n  - path: p.yaml\n",
			"p.yaml":             "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: other\nspec:\n  replicas: 2\n",
		}, "no Deployment other to patch"},
		{"patch field", map[string]string{
			"kustomization.yaml": kust + "patches:\n  - path: p.yaml\n",
			"p.yaml":             "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicaz: 2\n",
		}, `unknown field "replicaz"`},
		{"replicas target", map[string]string{"kustomization.yaml": kust + "replicas:\n  - name: other\n    count: 2\n"}, "replicas: no Deployment other"},
		{"images target", map[string]string{"kustomization.yaml": kust + "images:\n  - name: ghcr.io/other/other\n    newTag: v1\n"}, "no container runs"},
		{"missing generator file", map[string]string{"kustomization.yaml": strings.Replace(kust, "[config.yaml]", "[config.yaml, extra.yaml]", 1)}, "extra.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"kustomization.yaml": kust, "d.yaml": deployment, "config.yaml": string(baseConfig)}
			for k, v := range tt.files {
				files[k] = v
			}
			for k, v := range files {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := kustomize(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("want an error containing %q, got %v", tt.want, err)
			}
		})
	}

	// The fixture itself builds.
	dir := t.TempDir()
	for k, v := range map[string]string{"kustomization.yaml": kust, "d.yaml": deployment, "config.yaml": string(baseConfig)} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := kustomize(dir)
	if err != nil {
		t.Fatalf("the fixture does not build: %v", err)
	}

	// Config files are loaded strictly and validated, every one of them.
	t.Run("config", func(t *testing.T) {
		for _, tc := range []struct {
			name, file, content, want string
		}{
			{"unknown key", "config.yaml", string(baseConfig) + "bogus_key: 1\n", "unknown key bogus_key"},
			{"invalid value", "config.yaml", strings.Replace(string(baseConfig), "ttl: 30s", "ttl: 0s", 1), "dns.ttl"},
			{"replay past the deltas' retention", "config.yaml", strings.Replace(string(baseConfig), "replay: 5m ", "replay: 2h ", 1), "score.replay"},
			{"scorer group's topic taken", "config.yaml", strings.Replace(string(baseConfig), "score_parts_topic: cdnpilot.score-parts.v1 ", "score_parts_topic: cdnpilot.rankings.v1 ", 1), "kafka.score_parts_topic"},
			{"another file", "steer.yaml", string(baseConfig) + "bogus_key: 1\n", "unknown key bogus_key"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bb := b.clone()
				p := filepath.Join(t.TempDir(), tc.file)
				if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
				bb.configs[configMapName][tc.file] = p
				var got problems
				checker{b: bb, f: repoFacts(t), p: &got}.configs()
				if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, tc.want) }) {
					t.Errorf("want a problem containing %q, got %v", tc.want, got)
				}
			})
		}
	})
}

// TestMergePatch pins the merge rules the overlays rely on.
func TestMergePatch(t *testing.T) {
	var orig, patch any
	mustJSON := func(s string, v *any) {
		if err := json.Unmarshal([]byte(s), v); err != nil {
			t.Fatal(err)
		}
	}
	mustJSON(`{"a":{"b":1,"c":2},"l":[{"name":"x","v":1,"w":1},{"name":"y","v":1}],"s":[1,2],"gone":true}`, &orig)
	mustJSON(`{"a":{"c":3},"l":[{"name":"x","v":2},{"name":"z"}],"s":[3],"gone":null}`, &patch)
	got, _ := json.Marshal(mergePatch(orig, patch))
	want := `{"a":{"b":1,"c":3},"l":[{"name":"x","v":2,"w":1},{"name":"y","v":1},{"name":"z"}],"s":[3]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
