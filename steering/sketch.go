package steering

import (
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// sketchAccuracy is the DDSketch relative accuracy of window quantiles.
const sketchAccuracy = 0.02

// valueMapping maps values to DDSketch bins. It is immutable and shared by
// every sketch: one per sketch was an allocation per window and figure.
var valueMapping = func() *mapping.LogarithmicMapping {
	m, err := mapping.NewLogarithmicMapping(sketchAccuracy)
	if err != nil {
		panic(err) // a constant accuracy in range; cannot fail
	}
	return m
}()

// sketch is a DDSketch of positive values (every figure a window keeps a
// quantile of is a clamped positive duration or rate): the library's
// logarithmic mapping and paginated store, with the total kept beside
// them. ddsketch.DDSketch sums its stores on every quantile asked, four
// scans of the pages per quantile; a tick asks five quantiles of each of
// 300,000 windows, and that was half of it.
type sketch struct {
	bins  *store.BufferedPaginatedStore // nil until the first value; paginated keeps sparse windows small
	total float64
}

func (s *sketch) add(v, w float64) {
	if w <= 0 {
		return
	}
	if s.bins == nil {
		s.bins = store.NewBufferedPaginatedStore()
	}
	s.bins.AddWithCount(valueMapping.Index(v), w)
	s.total += w
}

// quantiles returns the values at quantiles q1 <= q2 in one ordered pass
// over the bins: the lowest bin whose cumulative weight exceeds q of the
// total; -1 without data. q2 < 0 skips the second quantile (it returns
// -1).
//
// DDSketch ranks at q*(n-1), made for unit counts. Forward-decayed
// weights are not: a rebase shrinks them so the newest is about 1, and
// under q*(n-1) a thin window whose weights sum to less than one then
// answers its smallest value for every quantile. q*total does not depend
// on the scale of the weights.
func (s *sketch) quantiles(q1, q2 float64) (float64, float64) {
	if s.bins == nil || s.total <= 0 {
		return -1, -1
	}
	r1, r2 := q1*s.total, q2*s.total
	k1, k2 := -1, -1
	last := 0
	var cum float64
	s.bins.ForEach(func(index int, count float64) bool {
		cum += count
		last = index
		if k1 < 0 && cum > r1 {
			k1 = index
		}
		if q2 >= 0 && k2 < 0 && cum > r2 {
			k2 = index
		}
		return k1 >= 0 && (q2 < 0 || k2 >= 0)
	})
	// q = 1, or float sums short of the total by a rounding error: the
	// highest bin holds the rank, as in the library's KeyAtRank.
	if k1 < 0 {
		k1 = last
	}
	v1, v2 := valueMapping.Value(k1), -1.0
	if q2 >= 0 {
		if k2 < 0 {
			k2 = last
		}
		v2 = valueMapping.Value(k2)
	}
	return v1, v2
}

// scale multiplies every count by k: a decay rebase (0 < k < 1), or 0 to
// forget everything.
func (s *sketch) scale(k float64) {
	s.total *= k
	if s.bins == nil {
		return
	}
	if s.total < 1e-300 {
		s.bins.Clear()
		s.total = 0
		return
	}
	_ = s.bins.Reweight(k) // k > 0 here: cannot fail
}
