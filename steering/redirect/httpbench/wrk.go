package httpbench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Load is one wrk run's settings.
type Load struct {
	URL         string        // scheme://host:port; the script sets the path
	Script      string        // Lua script file (World.Script)
	Duration    time.Duration // -d, whole seconds
	Connections int           // -c
	Threads     int           // -t
}

// Result is what wrk measured.
type Result struct {
	Requests           int
	RPS                float64
	P50, P75, P90, P99 time.Duration // --latency distribution
	LatencyMax         time.Duration
	// Socket errors: connect, read, write, timeout.
	Connect, Read, Write, Timeout int
	// Bad is wrk's "Non-2xx or 3xx responses".
	Bad int
}

// Failures are the requests that did not get a 2xx or 3xx, and the
// socket errors.
func (r Result) Failures() int { return r.Connect + r.Read + r.Write + r.Timeout + r.Bad }

// WRK runs wrk with --latency and parses its report.
func WRK(ctx context.Context, l Load) (Result, error) {
	args := []string{"-t", strconv.Itoa(max(l.Threads, 1)), "-c", strconv.Itoa(max(l.Connections, l.Threads, 1)),
		"-d", strconv.Itoa(max(int(l.Duration.Seconds()), 1)) + "s", "--timeout", "2s", "--latency"}
	if l.Script != "" {
		args = append(args, "-s", l.Script)
	}
	args = append(args, l.URL)
	cmd := exec.CommandContext(ctx, "wrk", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("wrk %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return parse(out.Bytes())
}

// HalfLoad is how a rate is set with wrk 4, which has no -R: each
// connection pauses a random 0..2*delayMS ms (the script's delay()) after
// every answer, so n connections send about n*1000/delayMS requests per
// second, a little less by the answers' own latency. wrk's latency
// starts when the request is written, after the pause. Connections are
// the rate's share of 10 ms pauses.
func HalfLoad(rps float64) (connections, delayMS int) {
	const d = 10
	return max(1, int(math.Ceil(rps*d/1000))), d
}

var (
	reTotal   = regexp.MustCompile(`(\d+) requests in `)
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	rePct     = regexp.MustCompile(`(?m)^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$`)
	reLatency = regexp.MustCompile(`(?m)^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m|h)\s`)
	reSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reBad     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parse reads wrk's report: the totals, the latency distribution of
// --latency, and the error lines wrk prints only when there were errors.
func parse(out []byte) (Result, error) {
	var r Result
	m := reTotal.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output lacks the request count:\n%s", tail(out))
	}
	r.Requests, _ = strconv.Atoi(string(m[1]))
	if m = reRPS.FindSubmatch(out); m == nil {
		return r, fmt.Errorf("wrk output lacks Requests/sec:\n%s", tail(out))
	}
	r.RPS, _ = strconv.ParseFloat(string(m[1]), 64)
	pct := map[string]*time.Duration{"50": &r.P50, "75": &r.P75, "90": &r.P90, "99": &r.P99}
	for _, m := range rePct.FindAllSubmatch(out, -1) {
		*pct[string(m[1])] = duration(m[2], m[3])
	}
	if r.P99 == 0 && r.Requests > 0 {
		return r, fmt.Errorf("wrk output lacks the latency distribution (--latency):\n%s", tail(out))
	}
	if m = reLatency.FindSubmatch(out); m != nil {
		r.LatencyMax = duration(m[1], m[2])
	}
	if m = reSocket.FindSubmatch(out); m != nil {
		for i, dst := range []*int{&r.Connect, &r.Read, &r.Write, &r.Timeout} {
			*dst, _ = strconv.Atoi(string(m[i+1]))
		}
	}
	if m = reBad.FindSubmatch(out); m != nil {
		r.Bad, _ = strconv.Atoi(string(m[1]))
	}
	return r, nil
}

// duration reads wrk's "1.23ms" (units us, ms, s, m, h).
func duration(num, unit []byte) time.Duration {
	f, _ := strconv.ParseFloat(string(num), 64)
	u := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[string(unit)]
	return time.Duration(math.Round(f * float64(u)))
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
