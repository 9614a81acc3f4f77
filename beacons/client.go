package beacons

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per client. IPv6 clients are keyed by /64, the
// unit one subscriber usually gets, so rotating addresses does not help.
type limiter struct {
	rps   rate.Limit
	burst int
	mu    sync.Mutex
	m     map[netip.Addr]*bucket
	ops   int
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

const limiterMaxClients = 200_000

func newLimiter(rps float64, burst int) *limiter {
	if rps <= 0 {
		return nil
	}
	return &limiter{rps: rate.Limit(rps), burst: burst, m: make(map[netip.Addr]*bucket)}
}

// allow reports whether the client may make one more request now, and if
// not, how long until it may.
func (l *limiter) allow(a netip.Addr, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[a]
	if b == nil {
		l.sweep(now)
		b = &bucket{l: rate.NewLimiter(l.rps, l.burst)}
		l.m[a] = b
	}
	b.seen = now
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops idle clients so the map cannot grow without bound under a
// spray of source addresses. It runs every 1024 new clients, and at the cap.
// At the cap it forgets clients idle for a second, then, if a spray keeps
// the map full, an arbitrary quarter (map order): a client that is
// forgotten gets a fresh bucket, which only ever lets a few requests more
// through, while the well-behaved majority keeps its state.
func (l *limiter) sweep(now time.Time) {
	l.ops++
	full := len(l.m) >= limiterMaxClients
	if l.ops%1024 != 0 && !full {
		return
	}
	idle := time.Minute
	if full {
		idle = time.Second
	}
	for k, b := range l.m {
		if now.Sub(b.seen) >= idle {
			delete(l.m, k)
		}
	}
	if len(l.m) < limiterMaxClients {
		return
	}
	drop := len(l.m) / 4
	for k := range l.m {
		if drop == 0 {
			break
		}
		delete(l.m, k)
		drop--
	}
}
