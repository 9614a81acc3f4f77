package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleIsValidAndMatchesDefaults(t *testing.T) {
	cfg, err := Parse(Example)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The example documents the defaults; drift means one of them lies.
	def := Default()
	if cfg.HTTPAddr != def.HTTPAddr || cfg.Kafka.BeaconsTopic != def.Kafka.BeaconsTopic ||
		cfg.Consume.BatchRows != def.Consume.BatchRows || cfg.Ingest.MaxBodyBytes != def.Ingest.MaxBodyBytes ||
		cfg.Kafka.BatchTimeout != def.Kafka.BatchTimeout || cfg.Demo.Viewers != def.Demo.Viewers {
		t.Fatalf("example and Default() disagree:\n%+v\n%+v", cfg, def)
	}
}

func TestGoodFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBadFixtures(t *testing.T) {
	want := map[string]string{
		"unknown_key.yaml":     "line 3: unknown key brokerz",
		"bad_duration.yaml":    `line 2: "fast" is not a duration`,
		"bad_compression.yaml": `kafka.compression: "brotli"`,
		"bad_proxy.yaml":       "ingest.trusted_proxies[0]",
		"bad_addr.yaml":        `http_addr: "8080" is not host:port`,
		"wrong_type.yaml":      "line 1",
		"two_docs.yaml":        "more than one YAML document",
		"syntax.yaml":          "line",
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(want) {
		t.Fatalf("%d bad fixtures, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, func(string) string { return "" })
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), want[filepath.Base(f)]) {
				t.Fatalf("error %q does not contain %q", err, want[filepath.Base(f)])
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"CDNPILOT_KAFKA_BROKERS":       " k1:9092, ,k2:9092",
		"CDNPILOT_CLICKHOUSE_ADDR":     "ch:9000",
		"CDNPILOT_CLICKHOUSE_PASSWORD": "s3cret",
		"CDNPILOT_HTTP_ADDR":           "0.0.0.0:9999",
	}
	cfg, err := Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Kafka.Brokers, "|") != "k1:9092|k2:9092" || cfg.ClickHouse.Addr != "ch:9000" ||
		cfg.ClickHouse.Password != "s3cret" || cfg.HTTPAddr != "0.0.0.0:9999" || cfg.Kafka.Embedded() {
		t.Fatalf("env not applied: %+v", cfg)
	}
}

func TestPasswordNeverFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("clickhouse:\n  password: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "unknown key password") {
		t.Fatalf("password in file: err = %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Default()
	cfg.Kafka.Partitions = 0
	cfg.Consume.BatchRows = 0
	cfg.Ingest.CORSOrigins = []string{"example.com"}
	cfg.Kafka.BatchTimeout = Duration(2 * time.Second)
	err := cfg.Validate()
	for _, key := range []string{"kafka.partitions", "consume.batch_rows", "ingest.cors_origins[0]", "kafka.batch_timeout"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("missing %s in %v", key, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example)
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, p := range files {
			b, _ := os.ReadFile(p)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		_ = cfg.Validate()
	})
}
