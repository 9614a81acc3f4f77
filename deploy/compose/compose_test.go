package compose

import (
	"encoding/xml"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/cdnpilot/cdnpilot/internal/app"
	"github.com/cdnpilot/cdnpilot/internal/config"
)

// No Docker engine here: these tests load compose.yaml the way docker
// compose does (compose-go: schema validation, interpolation, merges,
// consistency) and check what the stack depends on across files.

// The role services, by the exact names docs and dashboards use, with the
// subcommand each runs; migrate is the one-shot before them.
var roles = map[string]string{
	"ingest-1": "ingest", "ingest-2": "ingest", "consume": "consume", "score-1": "score", "score-2": "score",
	"steer-1": "steer", "steer-2": "steer", "admin": "admin", "migrate": "migrate",
}

// clickHouseRoles are the subcommands that open ClickHouse at start-up (and
// run Migrate there): they must wait for the cluster schema.
var clickHouseRoles = []string{"consume", "steer", "admin", "migrate"}

// The variables compose.yaml reads; README.md lists them.
var variables = []string{"CDNPILOT_ADMIN_TOKEN", "CDNPILOT_CLICKHOUSE_PASSWORD", "CLICKHOUSE_CLUSTER_SECRET", "GRAFANA_ADMIN_PASSWORD"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// loadProject loads compose.yaml with an empty environment: every variable
// has a default, so the stack starts without any.
func loadProject(t *testing.T, env types.Mapping) *types.Project {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: env,
	})
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	if p.Name != "cdnpilot" {
		t.Errorf("project name %q, want cdnpilot (compose.yaml's name:)", p.Name)
	}
	return p
}

func env(s types.ServiceConfig) func(string) string {
	return func(k string) string {
		if v, ok := s.Environment[k]; ok && v != nil {
			return *v
		}
		return ""
	}
}

func hasEnv(s types.ServiceConfig, k string) bool {
	v, ok := s.Environment[k]
	return ok && v != nil && *v != ""
}

// mount returns the volume of s mounted at target.
func mount(s types.ServiceConfig, target string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		if v.Target == target {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

func waitsFor(t *testing.T, s types.ServiceConfig, dep, condition string) {
	t.Helper()
	if d, ok := s.DependsOn[dep]; !ok || d.Condition != condition {
		t.Errorf("%s: want depends_on %s: {condition: %s}, have %+v", s.Name, dep, condition, s.DependsOn[dep])
	}
}

func healthy(t *testing.T, s types.ServiceConfig) {
	t.Helper()
	if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
		t.Errorf("%s: a long-running service needs a healthcheck (others wait for service_healthy)", s.Name)
	}
	if s.Restart != types.RestartPolicyUnlessStopped && s.Restart != types.RestartPolicyAlways {
		t.Errorf("%s: restart %q, want unless-stopped", s.Name, s.Restart)
	}
}

func oneShot(t *testing.T, s types.ServiceConfig) {
	t.Helper()
	if s.Restart != types.RestartPolicyNo {
		t.Errorf("%s: a one-shot job needs restart: \"no\" (others wait for service_completed_successfully), have %q", s.Name, s.Restart)
	}
}

func TestVariablesHaveDefaults(t *testing.T) {
	src, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\$\{([^}]*)\}`)
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		name, def, ok := strings.Cut(m[1], ":-")
		if !ok || def == "" {
			t.Errorf("${%s}: every variable needs a default (${NAME:-value}), so `up -d` works without any", m[1])
		}
		if !slices.Contains(variables, name) {
			t.Errorf("${%s}: not one of the variables README.md documents %v", name, variables)
		}
	}
	// An environment that sets them wins over the defaults.
	p := loadProject(t, types.Mapping{"CDNPILOT_ADMIN_TOKEN": "a-token-of-the-operator"})
	if got := env(p.Services["admin"])("CDNPILOT_ADMIN_TOKEN"); got != "a-token-of-the-operator" {
		t.Errorf("admin: CDNPILOT_ADMIN_TOKEN %q, want the environment's", got)
	}
}

func TestKafka(t *testing.T) {
	p := loadProject(t, nil)
	var brokers []types.ServiceConfig
	for _, s := range p.Services {
		if strings.HasPrefix(s.Image, "apache/kafka:") && strings.Contains(env(s)("KAFKA_PROCESS_ROLES"), "broker") {
			brokers = append(brokers, s)
		}
	}
	if len(brokers) != 3 {
		t.Fatalf("%d Kafka brokers, want 3", len(brokers))
	}
	want := map[string]string{
		"KAFKA_DEFAULT_REPLICATION_FACTOR":               "3",
		"KAFKA_MIN_INSYNC_REPLICAS":                      "2",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "3",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
	}
	var voters []string
	ids := map[string]bool{}
	advertised := map[string]bool{}
	for _, s := range brokers {
		e := env(s)
		for k, v := range want {
			if e(k) != v {
				t.Errorf("%s: %s=%q, want %s", s.Name, k, e(k), v)
			}
		}
		if !strings.Contains(e("KAFKA_PROCESS_ROLES"), "controller") && e("KAFKA_CONTROLLER_QUORUM_VOTERS") == "" {
			t.Errorf("%s: no KRaft controller quorum", s.Name)
		}
		if e("CLUSTER_ID") == "" || e("CLUSTER_ID") != env(brokers[0])("CLUSTER_ID") {
			t.Errorf("%s: CLUSTER_ID %q: one id for every node", s.Name, e("CLUSTER_ID"))
		}
		if e("KAFKA_CONTROLLER_QUORUM_VOTERS") != env(brokers[0])("KAFKA_CONTROLLER_QUORUM_VOTERS") {
			t.Errorf("%s: a quorum of its own: %s", s.Name, e("KAFKA_CONTROLLER_QUORUM_VOTERS"))
		}
		id := e("KAFKA_NODE_ID")
		if id == "" || ids[id] {
			t.Errorf("%s: KAFKA_NODE_ID %q is empty or taken", s.Name, id)
		}
		ids[id] = true
		voters = append(voters, id+"@"+s.Name+":9093")
		adv := e("KAFKA_ADVERTISED_LISTENERS")
		if adv != "PLAINTEXT://"+s.Name+":9092" {
			t.Errorf("%s: advertises %q; clients on the compose network reach it as %s:9092", s.Name, adv, s.Name)
		}
		advertised[s.Name+":9092"] = true
		if v, ok := mount(s, e("KAFKA_LOG_DIRS")); !ok || v.Type != types.VolumeTypeVolume {
			t.Errorf("%s: KAFKA_LOG_DIRS %q is not on a named volume", s.Name, e("KAFKA_LOG_DIRS"))
		}
		healthy(t, s)
	}
	got := strings.Split(env(brokers[0])("KAFKA_CONTROLLER_QUORUM_VOTERS"), ",")
	slices.Sort(got)
	slices.Sort(voters)
	if !slices.Equal(got, voters) {
		t.Errorf("KAFKA_CONTROLLER_QUORUM_VOTERS %v, want %v", got, voters)
	}

	// cdnpilot talks to these brokers, and the topics job creates every
	// topic the config names before any role starts.
	cfg := loadConfig(t, p, p.Services["ingest-1"])
	for _, b := range cfg.Kafka.Brokers {
		if !advertised[b] {
			t.Errorf("cdnpilot.yaml: kafka.brokers has %s, which no broker advertises", b)
		}
	}
	topics, ok := p.Services["kafka-topics"]
	if !ok {
		t.Fatal("no kafka-topics service")
	}
	oneShot(t, topics)
	created := createdTopics(t, topics.Command)
	// As cdnpilot would create them (app.Topics): partitions, compaction
	// and retention.
	for _, want := range app.Topics(cfg) {
		got, ok := created[want.Name]
		if !ok {
			t.Errorf("kafka-topics does not create %s", want.Name)
			continue
		}
		delete(created, want.Name)
		if got.partitions != want.Partitions {
			t.Errorf("kafka-topics: %s has %d partitions, cdnpilot creates it with %d", want.Name, got.partitions, want.Partitions)
		}
		if compacted := got.configs["cleanup.policy"] == "compact"; compacted != want.Compacted {
			t.Errorf("kafka-topics: %s: cleanup.policy %q, want compacted %v", want.Name, got.configs["cleanup.policy"], want.Compacted)
		}
		retention := ""
		if want.Retention > 0 {
			retention = strconv.FormatInt(want.Retention.Milliseconds(), 10)
		}
		if got.configs["retention.ms"] != retention {
			t.Errorf("kafka-topics: %s: retention.ms %q, want %q", want.Name, got.configs["retention.ms"], retention)
		}
	}
	for name := range created {
		t.Errorf("kafka-topics creates %s, which cdnpilot.yaml does not name", name)
	}
	for _, b := range brokers {
		waitsFor(t, topics, b.Name, types.ServiceConditionHealthy)
	}

	// The scorer group: at least two members, at most one per beacon
	// partition, all in one consumer group.
	var scorers []string
	groups := map[string]bool{}
	for name, role := range roles {
		if role == "score" {
			scorers = append(scorers, name)
			groups[loadConfig(t, p, p.Services[name]).Score.GroupID] = true
		}
	}
	if len(scorers) < 2 || len(scorers) > cfg.Kafka.Partitions {
		t.Errorf("scorers %v: want 2 up to kafka.partitions (%d), the beacon partitions", scorers, cfg.Kafka.Partitions)
	}
	if len(groups) != 1 {
		t.Errorf("scorers %v are in the groups %v: one score.group_id splits the partitions between them", scorers, groups)
	}
}

// topic is how the kafka-topics job creates one topic.
type topic struct {
	partitions int
	configs    map[string]string // --config key=value
}

// createdTopics reads the `create --topic NAME ...` lines of the
// kafka-topics script.
func createdTopics(t *testing.T, command []string) map[string]topic {
	t.Helper()
	out := map[string]topic{}
	for _, line := range strings.Split(strings.Join(command, "\n"), "\n") {
		args := strings.Fields(line)
		if len(args) == 0 || args[0] != "create" {
			continue
		}
		name, tp := "", topic{configs: map[string]string{}}
		for i := 1; i+1 < len(args); i += 2 {
			switch flag, v := args[i], args[i+1]; flag {
			case "--topic":
				name = v
			case "--partitions":
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Errorf("kafka-topics: %q: --partitions %q", line, v)
				}
				tp.partitions = n
			case "--config":
				k, val, _ := strings.Cut(v, "=")
				tp.configs[k] = val
			default:
				t.Errorf("kafka-topics: %q: unexpected %s", line, flag)
			}
		}
		if _, dup := out[name]; dup || name == "" {
			t.Errorf("kafka-topics: %q: no topic, or one created twice", line)
		}
		out[name] = tp
	}
	if len(out) == 0 {
		t.Fatal("kafka-topics: no `create --topic` line")
	}
	return out
}

// TestPublishedPorts: every published port is on 127.0.0.1, and no two
// services publish the same host port.
func TestPublishedPorts(t *testing.T) {
	p := loadProject(t, nil)
	owner := map[string]string{}
	for _, s := range p.Services {
		for _, pc := range s.Ports {
			if pc.HostIP != "127.0.0.1" {
				t.Errorf("%s: port %s/%s is published on %q, want 127.0.0.1", s.Name, pc.Published, pc.Protocol, pc.HostIP)
			}
			key := pc.Published + "/" + pc.Protocol
			if prev, dup := owner[key]; dup {
				t.Errorf("%s: host port %s is %s's too", s.Name, key, prev)
			}
			owner[key] = s.Name
		}
	}
}

// chXML is the subset of ClickHouse's (and Keeper's) XML config the stack
// relies on.
type chXML struct {
	RemoteServers struct {
		Clusters []struct {
			XMLName xml.Name
			Secret  struct {
				FromEnv string `xml:"from_env,attr"`
			} `xml:"secret"`
			Shards []struct {
				InternalReplication bool `xml:"internal_replication"`
				Replicas            []struct {
					Host string `xml:"host"`
					Port int    `xml:"port"`
				} `xml:"replica"`
			} `xml:"shard"`
		} `xml:",any"`
	} `xml:"remote_servers"`
	Zookeeper struct {
		Nodes []struct {
			Host string `xml:"host"`
			Port int    `xml:"port"`
		} `xml:"node"`
	} `xml:"zookeeper"`
	Macros struct {
		Cluster string `xml:"cluster"`
		Shard   string `xml:"shard"`
		Replica string `xml:"replica"`
	} `xml:"macros"`
	InterserverHTTPHost string `xml:"interserver_http_host"`
	Profiles            struct {
		Profiles []struct {
			XMLName               xml.Name
			InsertDistributedSync string `xml:"insert_distributed_sync"`
		} `xml:",any"`
	} `xml:"profiles"`
	Users struct {
		Users []struct {
			XMLName  xml.Name
			Profile  string `xml:"profile"`
			Password struct {
				FromEnv string `xml:"from_env,attr"`
			} `xml:"password"`
		} `xml:",any"`
	} `xml:"users"`
	KeeperServer struct {
		TCPPort int `xml:"tcp_port"`
		Servers []struct {
			Hostname string `xml:"hostname"`
		} `xml:"raft_configuration>server"`
	} `xml:"keeper_server"`
}

// mountedXML decodes the XML file bind-mounted at target in s.
func mountedXML(t *testing.T, s types.ServiceConfig, target string) chXML {
	t.Helper()
	v, ok := mount(s, target)
	if !ok || v.Type != types.VolumeTypeBind {
		t.Fatalf("%s: nothing bind-mounted at %s", s.Name, target)
	}
	data, err := os.ReadFile(v.Source)
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	var c chXML
	if err := xml.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %s: %v", s.Name, v.Source, err)
	}
	return c
}

func TestClickHouse(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t, nil)
	var replicas, keepers []types.ServiceConfig
	for _, s := range p.Services {
		_, macros := mount(s, "/etc/clickhouse-server/config.d/macros.xml")
		switch {
		case strings.HasPrefix(s.Image, "clickhouse/clickhouse-server:") && macros:
			replicas = append(replicas, s)
		case strings.HasPrefix(s.Image, "clickhouse/clickhouse-keeper:"):
			keepers = append(keepers, s)
		}
	}
	if len(replicas) != 2 || len(keepers) != 1 {
		t.Fatalf("%d ClickHouse replicas and %d Keepers, want 2 and 1", len(replicas), len(keepers))
	}
	keeper := keepers[0]
	healthy(t, keeper)
	kc := mountedXML(t, keeper, "/etc/clickhouse-keeper/keeper_config.xml")
	if len(kc.KeeperServer.Servers) != 1 || kc.KeeperServer.Servers[0].Hostname != keeper.Name || kc.KeeperServer.TCPPort == 0 {
		t.Errorf("%s: raft_configuration %+v, want the one server %s", keeper.Name, kc.KeeperServer, keeper.Name)
	}

	cfg := loadConfig(t, p, p.Services["consume"])
	names := map[string]bool{}
	shards := map[string]bool{}
	for _, s := range replicas {
		names[s.Name] = true
		healthy(t, s)
		waitsFor(t, s, keeper.Name, types.ServiceConditionHealthy)
		if s.Hostname != s.Name {
			t.Errorf("%s: hostname %q: the cluster config names the replicas by service name", s.Name, s.Hostname)
		}
		m := mountedXML(t, s, "/etc/clickhouse-server/config.d/macros.xml")
		if m.Macros.Cluster == "" || m.Macros.Shard == "" || m.Macros.Replica != s.Name || m.InterserverHTTPHost != s.Name {
			t.Errorf("%s: macros %+v, interserver_http_host %q: want cluster, shard, and replica = host = %s", s.Name, m.Macros, m.InterserverHTTPHost, s.Name)
		}
		shards[m.Macros.Cluster+"/"+m.Macros.Shard] = true

		c := mountedXML(t, s, "/etc/clickhouse-server/config.d/cluster.xml")
		var hosts []string
		found := false
		for _, cl := range c.RemoteServers.Clusters {
			if cl.XMLName.Local != m.Macros.Cluster {
				continue
			}
			found = true
			if len(cl.Shards) != 1 || !cl.Shards[0].InternalReplication {
				t.Errorf("%s: cluster %s: want 1 shard with internal_replication, have %+v", s.Name, cl.XMLName.Local, cl.Shards)
				continue
			}
			for _, r := range cl.Shards[0].Replicas {
				hosts = append(hosts, net.JoinHostPort(r.Host, strconv.Itoa(r.Port)))
			}
			if cl.Secret.FromEnv != "" && !hasEnv(s, cl.Secret.FromEnv) {
				t.Errorf("%s: the cluster secret comes from %s, which is not set", s.Name, cl.Secret.FromEnv)
			}
		}
		if !found {
			t.Errorf("%s: no cluster %q (its {cluster} macro) in remote_servers", s.Name, m.Macros.Cluster)
		}
		slices.Sort(hosts)
		if want := []string{"clickhouse-1:9000", "clickhouse-2:9000"}; !slices.Equal(hosts, want) {
			t.Errorf("%s: cluster replicas %v, want %v", s.Name, hosts, want)
		}
		if z := c.Zookeeper.Nodes; len(z) != 1 || z[0].Host != keeper.Name || z[0].Port != kc.KeeperServer.TCPPort {
			t.Errorf("%s: zookeeper %+v, want %s:%d", s.Name, z, keeper.Name, kc.KeeperServer.TCPPort)
		}

		// cdnpilot's user: its password from the environment, and
		// synchronous Distributed inserts (deploy/clickhouse/README.md).
		u := mountedXML(t, s, "/etc/clickhouse-server/users.d/cdnpilot.xml")
		profile := ""
		for _, user := range u.Users.Users {
			if user.XMLName.Local == cfg.ClickHouse.Username {
				profile = user.Profile
				if pw := user.Password.FromEnv; pw == "" || !hasEnv(s, pw) {
					t.Errorf("%s: user %s's password comes from %q, which is not set", s.Name, user.XMLName.Local, pw)
				}
			}
		}
		sync := ""
		for _, pr := range u.Profiles.Profiles {
			if pr.XMLName.Local == profile {
				sync = pr.InsertDistributedSync
			}
		}
		if profile == "" || sync != "1" {
			t.Errorf("%s: user %s (clickhouse.username) needs a profile with insert_distributed_sync 1; profile %q has %q",
				s.Name, cfg.ClickHouse.Username, profile, sync)
		}
	}
	if len(shards) != 1 {
		t.Errorf("the replicas are in %v; want one shard of one cluster", shards)
	}

	// The schema job applies deploy/clickhouse once both replicas are up,
	// and the config names the database those files create.
	job, ok := p.Services["clickhouse-schema"]
	if !ok {
		t.Fatal("no clickhouse-schema service")
	}
	oneShot(t, job)
	v, ok := mount(job, "/schema")
	if !ok || v.Source != filepath.Join(root, "deploy", "clickhouse") {
		t.Errorf("clickhouse-schema: /schema is %+v, want deploy/clickhouse", v)
	}
	for _, s := range replicas {
		waitsFor(t, job, s.Name, types.ServiceConditionHealthy)
	}
	ddl, err := os.ReadFile(filepath.Join(root, "deploy", "clickhouse", "0000_database.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db := ""
	if m := regexp.MustCompile(`CREATE DATABASE IF NOT EXISTS (\w+)`).FindSubmatch(ddl); m != nil {
		db = string(m[1])
	}
	if db != cfg.ClickHouse.Database {
		t.Errorf("cdnpilot.yaml: clickhouse.database %q; deploy/clickhouse creates %q", cfg.ClickHouse.Database, db)
	}
}

// loadConfig loads the cdnpilot.yaml s mounts, with s's environment, and
// validates it: what the container will run with.
func loadConfig(t *testing.T, p *types.Project, s types.ServiceConfig) config.Config {
	t.Helper()
	path := configArg(s.Command)
	v, ok := mount(s, path)
	if path == "" || !ok || v.Type != types.VolumeTypeBind {
		t.Fatalf("%s: --config %q is not a bind-mounted file", s.Name, path)
	}
	cfg, err := config.Load(v.Source, env(s))
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s: %s: %v", s.Name, v.Source, err)
	}
	return cfg
}

// configArg is the value of --config (or -config) in a command line.
func configArg(cmd []string) string {
	for i, a := range cmd {
		for _, f := range []string{"--config", "-config"} {
			if a == f && i+1 < len(cmd) {
				return cmd[i+1]
			}
			if v, ok := strings.CutPrefix(a, f+"="); ok {
				return v
			}
		}
	}
	return ""
}

func TestRoles(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t, nil)
	subs := subcommands(t, filepath.Join(root, "cmd", "cdnpilot"))

	var built []string
	for _, s := range p.Services {
		if s.Build != nil {
			built = append(built, s.Name)
		}
	}
	slices.Sort(built)
	var want []string
	for name := range roles {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(built, want) {
		t.Errorf("services built from deploy/Dockerfile: %v, want %v", built, want)
	}

	var replicas []string
	for _, s := range p.Services {
		if _, ok := mount(s, "/etc/clickhouse-server/config.d/macros.xml"); ok {
			replicas = append(replicas, s.Name)
		}
	}
	for name, role := range roles {
		t.Run(name, func(t *testing.T) {
			s, ok := p.Services[name]
			if !ok {
				t.Fatalf("no service %s", name)
			}
			if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("build %+v, want {context: ../.., dockerfile: deploy/Dockerfile}", s.Build)
			}
			if len(s.Entrypoint) > 0 {
				t.Errorf("entrypoint %v: the image's (cdnpilot) runs the command", s.Entrypoint)
			}
			if len(s.Command) == 0 || s.Command[0] != role {
				t.Fatalf("command %v, want %s ...", s.Command, role)
			}
			takesConfig, ok := subs[role]
			if !ok {
				t.Fatalf("%s is not a cdnpilot subcommand (cmd/cdnpilot/main.go)", role)
			}
			if !takesConfig {
				t.Errorf("cdnpilot %s takes no --config", role)
			}
			cfg := loadConfig(t, p, s)
			needsCH := slices.Contains(clickHouseRoles, role)
			if needsCH {
				host, _, _ := net.SplitHostPort(cfg.ClickHouse.Addr)
				if !slices.Contains(replicas, host) {
					t.Errorf("clickhouse.addr %s is not a ClickHouse replica %v", cfg.ClickHouse.Addr, replicas)
				}
			}
			if role == "migrate" {
				oneShot(t, s)
				waitsFor(t, s, "clickhouse-schema", types.ServiceConditionCompletedSuccessfully)
				return
			}
			healthy(t, s)
			if _, port, _ := net.SplitHostPort(cfg.HTTPAddr); port != "8080" {
				t.Errorf("http_addr %s: every role listens on 8080 in its container", cfg.HTTPAddr)
			}
			if !slices.Contains(s.HealthCheck.Test, "http://127.0.0.1:8080/readyz") {
				t.Errorf("healthcheck %v, want /readyz on 8080", s.HealthCheck.Test)
			}
			waitsFor(t, s, "kafka-topics", types.ServiceConditionCompletedSuccessfully)
			if needsCH {
				waitsFor(t, s, "migrate", types.ServiceConditionCompletedSuccessfully)
			}
			if role == "steer" {
				if _, port, _ := net.SplitHostPort(cfg.DNSAddr); port != "8053" {
					t.Errorf("dns_addr %q, want port 8053", cfg.DNSAddr)
				}
				for _, proto := range []string{"udp", "tcp"} {
					if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == 8053 && pc.Protocol == proto }) {
						t.Errorf("ports %v: no 8053/%s", s.Ports, proto)
					}
				}
			}
			if role == "admin" && cfg.Admin.Token == "" && len(cfg.Admin.Tokens) == 0 && cfg.Admin.OIDC.Issuer == "" {
				t.Error("admin has no way to authenticate (CDNPILOT_ADMIN_TOKEN, admin.tokens or admin.oidc)")
			}
			if role == "ingest" {
				for _, proxy := range cfg.Ingest.TrustedProxies {
					if pre, err := netip.ParsePrefix(proxy); err != nil || !gatewayPrefix(t, p).Overlaps(pre) {
						t.Errorf("ingest.trusted_proxies %s: not the compose network's gateway %s", proxy, gatewayPrefix(t, p))
					}
				}
			}
		})
	}
}

func gatewayPrefix(t *testing.T, p *types.Project) netip.Prefix {
	t.Helper()
	n, ok := p.Networks["default"]
	if !ok || len(n.Ipam.Config) != 1 {
		t.Fatalf("the default network has no fixed subnet: %+v", n)
	}
	gw, err := netip.ParseAddr(n.Ipam.Config[0].Gateway)
	if err != nil {
		t.Fatalf("default network gateway: %v", err)
	}
	return netip.PrefixFrom(gw, gw.BitLen())
}

// subcommands reads cmd/cdnpilot: the names commands() maps, and for each
// whether its run function, or a function of package main it calls, defines
// the -config flag.
func subcommands(t *testing.T, dir string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]*ast.FuncDecl{} // methods by their name too: enough for one package
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				funcs[fd.Name.Name] = fd
			}
		}
	}
	memo := map[string]bool{}
	var takesConfig func(name string, seen map[string]bool) bool
	takesConfig = func(name string, seen map[string]bool) bool {
		if v, ok := memo[name]; ok {
			return v
		}
		fd := funcs[name]
		if fd == nil || seen[name] {
			return false
		}
		seen[name] = true
		found := false
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || found {
				return !found
			}
			var callee string
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				callee = fn.Name
			case *ast.SelectorExpr:
				callee = fn.Sel.Name
			}
			if strings.HasPrefix(callee, "String") { // fs.String / fs.StringVar("config", ...)
				for _, a := range call.Args {
					if lit, ok := a.(*ast.BasicLit); ok && lit.Value == `"config"` {
						found = true
					}
				}
			}
			if !found && callee != name && takesConfig(callee, seen) {
				found = true
			}
			return !found
		})
		memo[name] = found
		return found
	}

	cmds := funcs["commands"]
	if cmds == nil {
		t.Fatalf("%s: no func commands()", dir)
	}
	out := map[string]bool{}
	ast.Inspect(cmds.Body, func(n ast.Node) bool {
		kv, ok := n.(*ast.KeyValueExpr)
		if !ok {
			return true
		}
		key, ok := kv.Key.(*ast.BasicLit)
		val, ok2 := kv.Value.(*ast.CompositeLit)
		if !ok || !ok2 || key.Kind != token.STRING {
			return true
		}
		name, _ := strconv.Unquote(key.Value)
		out[name] = false
		for _, el := range val.Elts {
			if id, ok := el.(*ast.Ident); ok && funcs[id.Name] != nil {
				out[name] = takesConfig(id.Name, map[string]bool{})
			}
		}
		return false
	})
	if len(out) == 0 {
		t.Fatalf("%s: commands() maps no subcommands", dir)
	}
	return out
}

func TestMountsAndDependencies(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t, nil)
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if !strings.HasPrefix(v.Source, root+string(filepath.Separator)) {
					t.Errorf("%s: bind mount %s is outside the repository", s.Name, v.Source)
					continue
				}
				if !v.ReadOnly {
					t.Errorf("%s: bind mount %s is writable; the stack only reads the repository", s.Name, v.Source)
				}
				_, err := os.Stat(v.Source)
				if err != nil {
					t.Errorf("%s: bind mount: %v", s.Name, err)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: volume %s is not declared", s.Name, v.Source)
				}
			default:
				t.Errorf("%s: %s mount at %s: only bind mounts and named volumes", s.Name, v.Type, v.Target)
			}
		}
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s: depends on %s, which is no service", s.Name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable {
					t.Errorf("%s: waits for %s to be healthy, which has no healthcheck", s.Name, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				oneShot(t, target)
			default:
				t.Errorf("%s: depends on %s with condition %q: say what it waits for", s.Name, dep, d.Condition)
			}
		}
	}

	// Prometheus and Grafana get deploy/monitoring where its README says.
	for _, m := range []struct{ service, target, source string }{
		{"prometheus", "/etc/prometheus", "deploy/monitoring/prometheus"},
		{"grafana", "/etc/grafana/provisioning", "deploy/monitoring/grafana/provisioning"},
		{"grafana", "/var/lib/grafana/dashboards/cdnpilot", "deploy/monitoring/grafana/dashboards"},
	} {
		s := p.Services[m.service]
		if v, ok := mount(s, m.target); !ok || v.Source != filepath.Join(root, m.source) {
			t.Errorf("%s: %s is %+v, want %s", m.service, m.target, v, m.source)
		}
		healthy(t, s)
	}
	if !slices.Contains(p.Services["prometheus"].Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus: command %v: want --config.file=/etc/prometheus/prometheus.yml", p.Services["prometheus"].Command)
	}
	scrapeTargets(t, p, filepath.Join(root, "deploy", "monitoring", "prometheus", "prometheus.yml"))

	if _, err := os.Stat(filepath.Join(root, "deploy", "Dockerfile")); err != nil {
		t.Errorf("deploy/Dockerfile: %v", err)
	}
}

// scrapeTargets checks that Prometheus scrapes every long-running role on
// its port and nothing that is not a service.
func scrapeTargets(t *testing.T, p *types.Project, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &prom); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	scraped := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, _, err := net.SplitHostPort(target)
				if _, ok := p.Services[host]; err != nil || !ok {
					t.Errorf("prometheus.yml: target %s is not a compose service", target)
				}
				scraped[target] = true
			}
		}
	}
	for name, role := range roles {
		if role != "migrate" && !scraped[name+":8080"] {
			t.Errorf("prometheus.yml does not scrape %s:8080", name)
		}
	}
}

// TestLoadScript checks load.sh's syntax when bash is there to do it.
func TestLoadScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		if os.Getenv("CDNPILOT_REQUIRE_SERVERS") == "1" {
			t.Fatal("bash not installed; CDNPILOT_REQUIRE_SERVERS=1 requires it")
		}
		t.Skip("no bash")
	}
	if out, err := exec.CommandContext(t.Context(), bash, "-n", "load.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n load.sh: %v\n%s", err, out)
	}
}
