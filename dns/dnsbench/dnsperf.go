package dnsbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Load is one dnsperf run's settings.
type Load struct {
	Server   string        // host:port
	File     string        // queries in dnsperf's binary format
	Duration time.Duration // -l
	Clients  int           // -c: sockets
	Threads  int           // -T
	InFlight int           // -q: queries outstanding at most
	MaxQPS   int           // -Q; 0: as fast as the server answers
	Latency  bool          // -v: every answer's latency, for percentiles
	// CPUs, when set, pins dnsperf to these CPUs (taskset -c), so the
	// load generator does not take the server's CPU.
	CPUs string
}

// Result is what dnsperf measured.
type Result struct {
	Sent, Completed, Lost int
	QPS                   float64
	AvgLatency            time.Duration
	P50, P99, Max         time.Duration // from -v output only
	Rcodes                string        // "NOERROR 100%" as dnsperf prints them
}

// DNSPerf runs dnsperf over UDP and parses its report.
func DNSPerf(ctx context.Context, l Load) (Result, error) {
	host, port, ok := strings.Cut(l.Server, ":")
	if !ok {
		return Result{}, fmt.Errorf("server %q is not host:port", l.Server)
	}
	args := []string{"-s", host, "-p", port, "-B", "-d", l.File, "-l", strconv.Itoa(int(l.Duration.Seconds())),
		"-c", strconv.Itoa(max(l.Clients, 1)), "-T", strconv.Itoa(max(l.Threads, 1)), "-q", strconv.Itoa(max(l.InFlight, 1)), "-t", "2"}
	if l.MaxQPS > 0 {
		args = append(args, "-Q", strconv.Itoa(l.MaxQPS))
	}
	if l.Latency {
		args = append(args, "-v")
	}
	name := "dnsperf"
	if l.CPUs != "" {
		name, args = "taskset", append([]string{"-c", l.CPUs, "dnsperf"}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("dnsperf %s: %w\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return parse(out.Bytes())
}

var (
	reSent      = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	reAvg       = regexp.MustCompile(`Average Latency \(s\):\s+([\d.]+)`)
	reRcodes    = regexp.MustCompile(`Response codes:\s+(.*)`)
)

// parse reads dnsperf's statistics and, with -v, the latency (its last
// field, in seconds) of every "> RCODE ..." line.
func parse(out []byte) (Result, error) {
	var r Result
	for _, f := range []struct {
		re  *regexp.Regexp
		dst *int
	}{{reSent, &r.Sent}, {reCompleted, &r.Completed}, {reLost, &r.Lost}} {
		m := f.re.FindSubmatch(out)
		if m == nil {
			return r, fmt.Errorf("dnsperf output lacks %s:\n%s", f.re, tail(out))
		}
		*f.dst, _ = strconv.Atoi(string(m[1]))
	}
	m := reQPS.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("dnsperf output lacks the queries per second:\n%s", tail(out))
	}
	r.QPS, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := reAvg.FindSubmatch(out); m != nil {
		s, _ := strconv.ParseFloat(string(m[1]), 64)
		r.AvgLatency = seconds(s)
	}
	if m := reRcodes.FindSubmatch(out); m != nil {
		r.Rcodes = strings.TrimSpace(string(m[1]))
	}
	var lat []time.Duration
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "> ") {
			continue
		}
		f := strings.Fields(line)
		s, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		lat = append(lat, seconds(s))
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50 = lat[len(lat)/2]
		r.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		r.Max = lat[len(lat)-1]
	}
	return r, nil
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
